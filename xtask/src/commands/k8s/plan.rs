//! The runner's Kubernetes manifests and the admission policies, planned from
//! [`Site`] and the public keys: pure, snapshot-tested. Objects are built as
//! values and serialized by `serde_yaml` (keys sorted), never assembled from
//! strings; the only text added is each file's header comment.

use anyhow::Result;
use serde_json::{json, Value};

use crate::model::settings::{
    PolicyApi, Site, DNS_NAMESPACE, DNS_POD_LABEL, SHUTDOWN_MARGIN_SECONDS,
};
use crate::tools::cosign::PredicateKind;

/// The namespace the runners live in.
pub const NAMESPACE: &str = "forgejo-runners";
/// The Kyverno policy's name.
pub const POLICY_NAME: &str = "stagex-images-signed";
/// The allow-list's name (a Kubernetes ValidatingAdmissionPolicy).
pub const ALLOW_LIST_NAME: &str = "stagex-allowed-images";
/// The folders the generated files live in.
pub const RUNNER_DIR: &str = "k8s/forgejo-runner";
pub const POLICY_DIR: &str = "policies/kyverno";
pub const ALLOW_LIST_DIR: &str = "policies/kubernetes";
/// The DinD daemon's TLS port, and where its client certificates appear.
const DIND_PORT: u16 = 2376;
const CERTS: &str = "/certs";
/// The Secret key holding the file `forgejo-runner register` wrote.
const REGISTRATION_KEY: &str = ".runner";
/// Where the registration Secret is mounted (read-only, 0440).
const REGISTRATION_MOUNT: &str = "/etc/forgejo-runner/registration";
/// The runner's writable state (its registration copy).
const DATA: &str = "/data";
/// Where the runner and the engine wiper meet: the runner leaves `wipe` after
/// each job and waits until the wiper has emptied the engine and removed it.
const SYNC: &str = "/sync";
/// The runner's configuration file.
const CONFIG: &str = "/etc/forgejo-runner/config/config.yaml";
/// A job image that cannot resolve (`.invalid`, RFC 2606): jobs fail rather
/// than run on the runner itself until forgejo-job is published and pinned
/// (`forgejo-job/PUBLISHED`).
const UNSET_JOB_IMAGE: &str = "registry.invalid/publish-forgejo-job-to-pin-the-job-image";

/// One generated file: path relative to the root, its header notes (what is
/// not deployable yet), and its objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub path: String,
    pub notes: Vec<String>,
    pub objects: Vec<Value>,
}

/// The gap a missing cosign.pub leaves (the policy's own note).
fn missing_key_gap(site: &Site) -> String {
    format!(
        "cosign.pub is missing: {POLICY_DIR}/{POLICY_NAME}.yaml holds a placeholder key that admits no image under {}/ (it fails closed); `cargo xtask signing-key init` makes the key and regenerates the policy",
        site.publish_prefix
    )
}

/// What keeps the runner manifests from being deployable as they are.
fn runner_gaps(site: &Site) -> Vec<String> {
    let mut gaps = Vec::new();
    if site.runner_image_digest.is_none() {
        gaps.push(
            "RUNNER_IMAGE_DIGEST is not set in xtask/src/model/settings.rs: the runner Deployments name no pullable image until forgejo-runner is published (copy `manifest_digest` from out/forgejo-runner/publish.json)".to_string(),
        );
    }
    if site.job_image.is_none() {
        gaps.push(
            "forgejo-job/PUBLISHED pins no job image: the label names one that cannot resolve, so jobs fail until `cargo xtask publish forgejo-job` has published the job image and written its digest there (docs/ci-job-image.md)".to_string(),
        );
    }
    if site.egress.is_empty() {
        gaps.push(
            "RUNNER_EGRESS is empty in xtask/src/model/settings.rs: the runners reach the cluster DNS and nothing else (not Forgejo, not the registry) until their CIDRs and ports are set".to_string(),
        );
    }
    gaps
}

/// Why a generated file is not yet what a cluster can use, for people:
/// `k8s --check` and `all` print these. `public_keys` empty: no cosign.pub.
pub fn gaps(site: &Site, public_keys: &[String]) -> Vec<String> {
    let mut gaps = Vec::new();
    if public_keys.is_empty() {
        gaps.push(missing_key_gap(site));
    }
    gaps.extend(runner_gaps(site));
    gaps.extend(runtime_class_gap(site));
    gaps
}

/// The pull-request runners without a sandboxing runtime.
fn runtime_class_gap(site: &Site) -> Option<String> {
    site.check_runtime_class.is_none().then(|| format!(
        "CHECK_RUNTIME_CLASS is not set in xtask/src/model/settings.rs: the {} runners run pull-request code as root in a privileged engine with the node's kernel; set a sandboxing RuntimeClass (gVisor, Kata, Sysbox) once the cluster has one (docs/kubernetes.md)",
        site.check_runner_label
    ))
}

/// Every generated file.
pub fn manifests(site: &Site, public_keys: &[String]) -> Result<Vec<Manifest>> {
    let mut files = vec![Manifest {
        path: format!("{RUNNER_DIR}/namespace.yaml"),
        notes: vec![],
        objects: vec![namespace()],
    }];
    for (label, trusted) in [
        (site.runner_label.as_str(), true),
        (site.check_runner_label.as_str(), false),
    ] {
        let mut notes = runner_gaps(site);
        if !trusted {
            notes.extend(runtime_class_gap(site));
        }
        files.push(Manifest {
            path: format!("{RUNNER_DIR}/{label}.yaml"),
            notes,
            objects: runner(site, label, trusted)?,
        });
    }
    files.push(Manifest {
        path: format!("{POLICY_DIR}/{POLICY_NAME}.yaml"),
        notes: if public_keys.is_empty() {
            vec![missing_key_gap(site)]
        } else {
            vec![]
        },
        objects: vec![match site.policy_api {
            PolicyApi::ClusterPolicy => cluster_policy(site, public_keys),
            PolicyApi::ImageValidatingPolicy => image_validating_policy(site, public_keys),
        }],
    });
    files.push(Manifest {
        path: format!("{ALLOW_LIST_DIR}/{ALLOW_LIST_NAME}.yaml"),
        notes: vec![],
        objects: allow_list(site),
    });
    Ok(files)
}

/// The file's text: the header, then each object as a YAML document.
pub fn render(manifest: &Manifest) -> Result<String> {
    let mut text = String::from(
        "# Generated by `cargo xtask k8s` from xtask/src/model/settings.rs and cosign.pub; do not edit.\n# Change the settings, run `cargo xtask k8s`, and commit both.\n",
    );
    for note in &manifest.notes {
        text.push_str(&format!("# NOT READY: {note}\n"));
    }
    for object in &manifest.objects {
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(object)?);
    }
    Ok(text)
}

fn labels(name: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "forgejo-runner",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "cargo-xtask-k8s",
    })
}

/// The runners' namespace. DinD needs a privileged container, so Pod
/// Security must allow it here (and only here).
fn namespace() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": {
                "pod-security.kubernetes.io/enforce": "privileged",
                "pod-security.kubernetes.io/warn": "baseline",
            },
        },
    })
}

/// The runner image by digest, or a reference that cannot be pulled (and
/// says why) until one is published.
fn runner_image(site: &Site) -> String {
    match &site.runner_image_digest {
        Some(digest) => format!("{}/forgejo-runner@{digest}", site.publish_prefix),
        None => format!(
            "{}/forgejo-runner@sha256:unpublished-set-RUNNER_IMAGE_DIGEST",
            site.publish_prefix
        ),
    }
}

/// How long a runner lets its job finish when stopped, and the pod's grace
/// period, which must be longer.
fn shutdown(site: &Site, trusted: bool) -> (u32, u32) {
    let seconds = if trusted {
        site.shutdown_seconds.0
    } else {
        site.shutdown_seconds.1
    };
    (seconds, seconds + SHUTDOWN_MARGIN_SECONDS)
}

/// The runner's own configuration: its label, jobs on the DinD engine
/// (sharing the pod's network, so `localhost:2376` is the engine for them
/// too), the client certificates mounted read-only into each job.
fn runner_config(site: &Site, label: &str, trusted: bool) -> Result<String> {
    // A bare label runs jobs on the runner itself ("host" mode), beside its
    // registration: never that. Without a job image the label names one that
    // cannot resolve (.invalid), so jobs fail instead.
    let label = match &site.job_image {
        Some(image) => format!("{label}:docker://{image}"),
        None => format!("{label}:docker://{UNSET_JOB_IMAGE}"),
    };
    let client = format!("{CERTS}/client");
    let config = json!({
        "log": {"level": "info"},
        "runner": {
            // The runner rewrites its registration after it declares itself:
            // a copy the init container wrote 0600 for uid 1000.
            "file": format!("{DATA}/{REGISTRATION_KEY}"),
            "capacity": 1,
            "timeout": "3h",
            // On SIGTERM the running job may finish for this long; the pod's
            // terminationGracePeriodSeconds is longer.
            "shutdown_timeout": format!("{}s", shutdown(site, trusted).0),
            "labels": [label],
            "envs": {
                "DOCKER_HOST": format!("tcp://localhost:{DIND_PORT}"),
                "DOCKER_TLS_VERIFY": "1",
                "DOCKER_CERT_PATH": client,
            },
        },
        "cache": {"enabled": false},
        "container": {
            "network": "host",
            // Pull-request jobs run the test suite, which starts its own
            // engine: privileged, in the sandboxing runtime (CHECK_RUNTIME_CLASS).
            "privileged": !trusted,
            "options": format!("--volume={client}:{client}:ro"),
            "valid_volumes": [client],
            "docker_host": "-",
        },
    });
    Ok(serde_yaml::to_string(&config)?)
}

/// The engine's configuration: the containerd image store (OCI layouts,
/// attestations and multi-platform images as they are pushed).
fn daemon_json() -> Result<String> {
    Ok(serde_json::to_string_pretty(
        &json!({"features": {"containerd-snapshotter": true}}),
    )?)
}

/// What every container but DinD runs as: uid 1000, no privileges, no
/// capabilities, a read-only root filesystem.
fn unprivileged() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// The init container's command: the registration written by this uid,
/// 0600, from the Secret (mounted 0440: a copy with `cp` keeps that mode, and
/// the runner, rewriting it after declaring itself, gets EACCES and exits).
pub fn registration_command() -> Vec<String> {
    let source = format!("{REGISTRATION_MOUNT}/{REGISTRATION_KEY}");
    let target = format!("{DATA}/{REGISTRATION_KEY}");
    vec![
        "/usr/bin/busybox".into(),
        "sh".into(),
        "-c".into(),
        format!("set -e; rm -f {target}; umask 077; cat {source} > {target}"),
    ]
}

/// The runner's command: one job at a time (`one-job`), the engine wiped
/// between two jobs (it asks the wiper sidecar and waits), until SIGTERM, which
/// tini passes to the whole group so the runner lets its job finish
/// (`shutdown_timeout`) and the loop then ends.
pub fn runner_command() -> Vec<String> {
    let script = format!(
        "stop=; trap 'stop=1' TERM INT; \
         while [ -z \"$stop\" ]; do \
         /usr/bin/forgejo-runner one-job --config {CONFIG} || sleep 10; \
         [ -n \"$stop\" ] && break; \
         : > {SYNC}/wipe; \
         while [ -e {SYNC}/wipe ] && [ -z \"$stop\" ]; do sleep 1; done; \
         done"
    );
    vec![
        "/usr/sbin/tini".into(),
        "-g".into(),
        "--".into(),
        "/usr/bin/busybox".into(),
        "sh".into(),
        "-c".into(),
        script,
    ]
}

/// The wiper's command: when the runner asks, every container, image,
/// volume, network and build cache of the engine goes, then it answers.
pub fn wiper_command() -> Vec<String> {
    let script = format!(
        "while :; do \
         if [ -e {SYNC}/wipe ]; then \
         ids=$(docker ps --all --quiet); \
         if [ -n \"$ids\" ]; then docker rm --force --volumes $ids; fi; \
         docker system prune --all --force --volumes && docker builder prune --all --force && rm -f {SYNC}/wipe; \
         fi; \
         sleep 2; \
         done"
    );
    vec!["/bin/sh".into(), "-c".into(), script]
}

/// ServiceAccount, ConfigMap, Deployment and NetworkPolicy of one runner.
/// `trusted`: the runner that holds release secrets (its own nodes, apart
/// from the pull-request runners: a privileged DinD can reach its node).
fn runner(site: &Site, label: &str, trusted: bool) -> Result<Vec<Value>> {
    let name = format!("runner-{label}");
    let registration = format!("{name}-registration");
    let config = runner_config(site, label, trusted)?;
    let client = format!("{CERTS}/client");
    let docker_env = json!([
        {"name": "DOCKER_HOST", "value": format!("tcp://localhost:{DIND_PORT}")},
        {"name": "DOCKER_TLS_VERIFY", "value": "1"},
        {"name": "DOCKER_CERT_PATH", "value": client},
    ]);
    let (_, grace) = shutdown(site, trusted);
    let service_account = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels(&name)},
        // The runner never talks to the Kubernetes API.
        "automountServiceAccountToken": false,
    });
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": format!("{name}-config"), "namespace": NAMESPACE, "labels": labels(&name)},
        "data": {"config.yaml": config, "daemon.json": daemon_json()?},
    });
    let runner_container = json!({
        "name": "runner",
        "image": runner_image(site),
        "imagePullPolicy": "IfNotPresent",
        "command": runner_command(),
        "env": docker_env,
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "securityContext": unprivileged(),
        // The runner has no health endpoint: the probe proves the binary
        // still starts (a broken volume or image fails it).
        "livenessProbe": {
            "exec": {"command": ["/usr/bin/forgejo-runner", "--version"]},
            "periodSeconds": 60,
            "timeoutSeconds": 10,
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/forgejo-runner/config", "readOnly": true},
            {"name": "data", "mountPath": DATA},
            {"name": "docker-certs", "mountPath": CERTS, "readOnly": true},
            {"name": "sync", "mountPath": SYNC},
            {"name": "home", "mountPath": "/home/user"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    });
    // The registration, written from the read-only Secret where the runner
    // may rewrite it.
    let registration_copy = json!({
        "name": "registration",
        "image": runner_image(site),
        "imagePullPolicy": "IfNotPresent",
        "command": registration_command(),
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"},
        },
        "securityContext": unprivileged(),
        "volumeMounts": [
            {"name": "registration", "mountPath": REGISTRATION_MOUNT, "readOnly": true},
            {"name": "data", "mountPath": DATA},
        ],
    });
    let dind_container = json!({
        "name": "dind",
        "image": site.dind_image,
        "imagePullPolicy": "IfNotPresent",
        // A native sidecar (Kubernetes 1.29+): started, and its startup
        // probe passed, before the runner, which exits when it finds no
        // engine; stopped after it.
        "restartPolicy": "Always",
        // The one privileged container: a Docker engine needs it.
        "securityContext": {"privileged": true},
        // dockerd-entrypoint makes a CA, server and client certificates here
        // and listens on 2376 with TLS only.
        "env": [{"name": "DOCKER_TLS_CERTDIR", "value": CERTS}],
        "ports": [{"name": "docker-tls", "containerPort": DIND_PORT, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": "1", "memory": "2Gi", "ephemeral-storage": "10Gi"},
            "limits": {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "60Gi"},
        },
        "startupProbe": {
            "tcpSocket": {"port": DIND_PORT},
            "periodSeconds": 2,
            "failureThreshold": 60,
        },
        "readinessProbe": {"tcpSocket": {"port": DIND_PORT}, "periodSeconds": 10},
        "livenessProbe": {"tcpSocket": {"port": DIND_PORT}, "periodSeconds": 30, "failureThreshold": 4},
        "volumeMounts": [
            {"name": "docker-certs", "mountPath": CERTS},
            {"name": "docker-storage", "mountPath": "/var/lib/docker"},
            // The containerd image store (features.containerd-snapshotter).
            {"name": "config", "mountPath": "/etc/docker/daemon.json", "subPath": "daemon.json", "readOnly": true},
        ],
    });
    // Empties the engine between two jobs (the runner asks through /sync):
    // nothing a job pulled, built or started is there for the next one.
    let wiper_container = json!({
        "name": "engine-wiper",
        "image": site.dind_image,
        "imagePullPolicy": "IfNotPresent",
        "restartPolicy": "Always",
        "command": wiper_command(),
        "env": [
            {"name": "DOCKER_HOST", "value": format!("tcp://localhost:{DIND_PORT}")},
            {"name": "DOCKER_TLS_VERIFY", "value": "1"},
            {"name": "DOCKER_CERT_PATH", "value": client},
            {"name": "HOME", "value": "/tmp"},
        ],
        "resources": {
            "requests": {"cpu": "10m", "memory": "32Mi"},
            "limits": {"cpu": "500m", "memory": "128Mi"},
        },
        "securityContext": unprivileged(),
        "volumeMounts": [
            {"name": "docker-certs", "mountPath": CERTS, "readOnly": true},
            {"name": "sync", "mountPath": SYNC},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    });
    let mut pod_spec = json!({
        "serviceAccountName": name,
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        // Release runners and pull-request runners on nodes of
        // their own (`kubectl label node N forgejo-runner-pool=LABEL`).
        "nodeSelector": {"forgejo-runner-pool": label},
        // Taint those nodes (`kubectl taint node N
        // forgejo-runner-pool=LABEL:NoSchedule`): nothing else lands there.
        "tolerations": [{
            "key": "forgejo-runner-pool",
            "operator": "Equal",
            "value": label,
            "effect": "NoSchedule",
        }],
        // The Secret's files readable by the runner's group.
        "securityContext": {"fsGroup": 1000},
        // Longer than the runner's shutdown_timeout: a job may finish.
        "terminationGracePeriodSeconds": grace,
        "initContainers": [registration_copy, dind_container, wiper_container],
        "containers": [runner_container],
        "volumes": [
            {"name": "config", "configMap": {"name": format!("{name}-config")}},
            {"name": "registration", "secret": {"secretName": registration, "defaultMode": 0o440}},
            {"name": "data", "emptyDir": {"sizeLimit": "64Mi"}},
            {"name": "docker-certs", "emptyDir": {}},
            {"name": "docker-storage", "emptyDir": {"sizeLimit": "50Gi"}},
            {"name": "sync", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
            {"name": "home", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
    });
    if let Some(secret) = &site.image_pull_secret {
        pod_spec["imagePullSecrets"] = json!([{"name": secret}]);
    }
    if !trusted {
        if let Some(class) = &site.check_runtime_class {
            pod_spec["runtimeClassName"] = json!(class);
        }
    }
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels(&name)},
        "spec": {
            "replicas": 1,
            // One registration, one runner: never two pods sharing it.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels(&name)},
            "template": {
                "metadata": {
                    "labels": labels(&name),
                    // The cluster autoscaler never evicts a runner to shrink
                    // the pool; a drain stops it with its grace period.
                    "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
                },
                "spec": pod_spec,
            },
        },
    });
    let mut egress = vec![json!({
        "to": [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": DNS_NAMESPACE}},
            "podSelector": {"matchLabels": {DNS_POD_LABEL.0: DNS_POD_LABEL.1}},
        }],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    })];
    let mut purposes = Vec::new();
    for destination in &site.egress {
        purposes.push(destination.purpose);
        egress.push(json!({
            "to": destination.cidrs.iter().map(|cidr| json!({"ipBlock": {"cidr": cidr}})).collect::<Vec<_>>(),
            "ports": destination.tcp_ports.iter().map(|port| json!({"protocol": "TCP", "port": port})).collect::<Vec<_>>(),
        }));
    }
    let network_policy = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": labels(&name),
            "annotations": {"stagex.dev/egress": if purposes.is_empty() {
                "cluster DNS only: set RUNNER_EGRESS".to_string()
            } else {
                format!("cluster DNS, {}", purposes.join(", "))
            }},
        },
        "spec": {
            "podSelector": {"matchLabels": labels(&name)},
            "policyTypes": ["Ingress", "Egress"],
            // Nothing connects in: the runner polls Forgejo, and the engine
            // is reached inside the pod.
            "ingress": [],
            // The cluster DNS, and only the configured destinations (ports
            // as the destination pods listen: NetworkPolicy sees the address
            // after a Service's translation).
            "egress": egress,
        },
    });
    Ok(vec![
        service_account,
        config_map,
        deployment,
        network_policy,
    ])
}

/// The publishing registry's host and the path under it.
fn split_prefix(prefix: &str) -> (&str, &str) {
    prefix.split_once('/').unwrap_or((prefix, ""))
}

/// Every spelling of our publishing path the policies treat as ours, each
/// ending in `/`: the canonical host and each alias, bare and with the
/// default port (`:443`, which pods may write and the runtime accepts).
pub fn our_prefixes(site: &Site) -> Vec<String> {
    let (host, path) = split_prefix(&site.publish_prefix);
    let mut prefixes = Vec::new();
    for name in std::iter::once(host).chain(site.registry_aliases.iter().map(String::as_str)) {
        let name = name.to_ascii_lowercase();
        let mut spellings = vec![name.clone()];
        if !name.contains(':') {
            spellings.push(format!("{name}:443"));
        }
        for spelling in spellings {
            let prefix = if path.is_empty() {
                format!("{spelling}/")
            } else {
                format!("{spelling}/{path}/")
            };
            if !prefixes.contains(&prefix) {
                prefixes.push(prefix);
            }
        }
    }
    prefixes
}

/// A CEL list literal of strings.
fn cel_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| format!("'{}'", item.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// CEL: every image of the pod in `object` (containers, init and ephemeral).
const POD_IMAGES: &str = "(object.spec.containers + (has(object.spec.initContainers) ? object.spec.initContainers : []) + (has(object.spec.ephemeralContainers) ? object.spec.ephemeralContainers : [])).map(c, c.image)";

/// CEL: whether the pod names any image under our path, in any case (the
/// verify policy then sees it; a spelling it does not verify is refused by
/// the allow-list).
fn uses_our_registry(site: &Site) -> String {
    format!(
        "{POD_IMAGES}.exists(image, {}.exists(prefix, image.lowerAscii().startsWith(prefix)))",
        cel_list(&our_prefixes(site))
    )
}

/// The key set: the PEMs, or one placeholder that cannot parse (the policy
/// then fails closed) when there is no cosign.pub.
fn key_set(public_keys: &[String]) -> Vec<String> {
    if public_keys.is_empty() {
        vec!["MISSING: no cosign.pub yet; run `cargo xtask signing-key init`, which regenerates this policy".to_string()]
    } else {
        public_keys
            .iter()
            .map(|pem| pem.trim_end().to_string())
            .collect()
    }
}

/// The attestations every image must carry: both SBOMs and the SLSA
/// provenance `publish` attests beside them.
const REQUIRED_ATTESTATIONS: [PredicateKind; 3] = [
    PredicateKind::Spdxjson,
    PredicateKind::Cyclonedx,
    PredicateKind::Slsaprovenance1,
];

fn description(site: &Site) -> String {
    format!(
        "Every image under {}/ (and its other spellings: {}) must be signed with a key of this repository's key set (cosign.pub, and cosign.rotation.pub during a rotation) and carry its SPDX and CycloneDX SBOM attestations and its SLSA provenance v1 attestation; tags are replaced by the verified digest. Pods naming no such image are not sent to Kyverno (matchConditions); the allow-list policy {ALLOW_LIST_NAME} refuses images from anywhere else.",
        site.publish_prefix,
        our_prefixes(site).join(", ")
    )
}

/// Kyverno's `ClusterPolicy` (Kyverno 1.13 to 1.18): the signature, both
/// SBOM attestations and the provenance attestation, each by any one key of the set (one entry per key:
/// Kyverno splits several keys in one `publicKeys` for signatures but not for
/// attestations).
fn cluster_policy(site: &Site, public_keys: &[String]) -> Value {
    let entries: Vec<Value> = key_set(public_keys)
        .into_iter()
        .map(|key| {
            let mut keys = json!({"publicKeys": key});
            if !site.transparency_log {
                // We sign with --no-tlog (settings: SIGN_WITH_TRANSPARENCY_LOG).
                keys["rekor"] = json!({"ignoreTlog": true});
                keys["ctlog"] = json!({"ignoreSCT": true});
            }
            json!({"keys": keys})
        })
        .collect();
    let attestors = json!([{"count": 1, "entries": entries}]);
    let attestations: Vec<Value> = REQUIRED_ATTESTATIONS
        .iter()
        .map(|kind| json!({"type": kind.predicate_type(), "attestors": attestors}))
        .collect();
    let references: Vec<String> = our_prefixes(site)
        .iter()
        .map(|prefix| format!("{prefix}*"))
        .collect();
    json!({
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {
            "name": POLICY_NAME,
            "annotations": {
                "policies.kyverno.io/title": "StageX base images: signed, with SBOMs and provenance",
                "policies.kyverno.io/description": description(site),
            },
        },
        "spec": {
            // Decided at admission; existing pods are not re-judged.
            "background": false,
            "webhookConfiguration": {
                // A rule that cannot be evaluated (the placeholder key,
                // Kyverno unable to reach the registry) blocks the pod: fail
                // closed, but only for pods that name our registry.
                "failurePolicy": "Fail",
                "timeoutSeconds": 30,
                "matchConditions": [{
                    "name": "names-our-registry",
                    "expression": format!("request.kind.kind != 'Pod' || {}", uses_our_registry(site)),
                }],
            },
            "rules": [{
                "name": "signed-with-cosign-pub-and-sbom-attested",
                "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                "verifyImages": [{
                    "imageReferences": references,
                    "failureAction": "Enforce",
                    "type": "Cosign",
                    "mutateDigest": true,
                    "verifyDigest": true,
                    "required": true,
                    "attestors": attestors,
                    "attestations": attestations,
                }],
            }],
        },
    })
}

/// Kyverno's `ImageValidatingPolicy` (Kyverno 1.18 and later): the same
/// checks in CEL. Each key is an attestor of its own, and an image passes
/// when any one verifies (`verifyImageSignatures` with several attestors
/// requires all of them).
fn image_validating_policy(site: &Site, public_keys: &[String]) -> Value {
    let keys = key_set(public_keys);
    let names: Vec<String> = (0..keys.len()).map(|i| format!("key{i}")).collect();
    let attestors: Vec<Value> = keys
        .iter()
        .zip(&names)
        .map(|(key, name)| {
            let mut cosign = json!({"key": {"data": key}});
            if !site.transparency_log {
                cosign["ctlog"] = json!({"insecureIgnoreTlog": true, "insecureIgnoreSCT": true});
            }
            json!({"name": name, "cosign": cosign})
        })
        .collect();
    let any_key = |call: &dyn Fn(&str) -> String| -> String {
        names
            .iter()
            .map(|name| format!("{} > 0", call(name)))
            .collect::<Vec<_>>()
            .join(" || ")
    };
    let mut validations = vec![json!({
        "expression": format!(
            "variables.ours.all(image, {})",
            any_key(&|name| format!("verifyImageSignatures(image, [attestors.{name}])"))
        ),
        "message": format!("an image under {}/ is not signed by a key of the project's key set", site.publish_prefix),
    })];
    let mut attestations = Vec::new();
    for kind in REQUIRED_ATTESTATIONS {
        attestations.push(json!({"name": kind.name(), "intoto": {"type": kind.predicate_type()}}));
        validations.push(json!({
            "expression": format!(
                "variables.ours.all(image, {})",
                any_key(&|name| format!(
                    "verifyAttestationSignatures(image, attestations.{}, [attestors.{name}])",
                    kind.name()
                ))
            ),
            "message": format!(
                "an image under {}/ has no {} attestation signed by a key of the project's key set",
                site.publish_prefix,
                kind.predicate_type()
            ),
        }));
    }
    let globs: Vec<Value> = our_prefixes(site)
        .iter()
        .map(|prefix| json!({"glob": format!("{prefix}*")}))
        .collect();
    json!({
        "apiVersion": "policies.kyverno.io/v1",
        "kind": "ImageValidatingPolicy",
        "metadata": {
            "name": POLICY_NAME,
            "annotations": {
                "policies.kyverno.io/title": "StageX base images: signed, with SBOMs and provenance",
                "policies.kyverno.io/description": description(site),
            },
        },
        "spec": {
            "validationActions": ["Deny"],
            "failurePolicy": "Fail",
            "webhookConfiguration": {"timeoutSeconds": 30},
            "evaluation": {"background": {"enabled": false}},
            "matchConstraints": {
                "resourceRules": [{
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["pods"],
                }],
            },
            "matchConditions": [{"name": "names-our-registry", "expression": uses_our_registry(site)}],
            "matchImageReferences": globs,
            "validationConfigurations": {"mutateDigest": true, "verifyDigest": true, "required": true},
            "variables": [{
                "name": "ours",
                "expression": format!(
                    "{POD_IMAGES}.filter(image, {}.exists(prefix, image.startsWith(prefix)))",
                    cel_list(&our_prefixes(site))
                ),
            }],
            "attestors": attestors,
            "attestations": attestations,
            "validations": validations,
        },
    })
}

/// The allow-list, as a Kubernetes ValidatingAdmissionPolicy (evaluated by
/// the API server itself: no webhook, no outage): a pod outside the exempt
/// namespaces may only run images under our path (a spelling the verify
/// policy checks) or one of the named images (DinD's, by digest).
fn allow_list(site: &Site) -> Vec<Value> {
    let mut named = vec![site.dind_image.clone()];
    named.extend(site.allowed_images.iter().cloned());
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {
            "name": ALLOW_LIST_NAME,
            "annotations": {
                "stagex.dev/description": format!(
                    "Pods outside {} run only images under {} or these by digest: {}",
                    site.exempt_namespaces.join(", "),
                    our_prefixes(site).join(", "),
                    named.join(", ")
                ),
            },
        },
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [{
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["pods", "pods/ephemeralcontainers"],
                }],
            },
            // The kubelet's mirror pods stand for static pods it runs anyway.
            "matchConditions": [{
                "name": "not-a-mirror-pod",
                "expression": "!has(object.metadata.annotations) || !('kubernetes.io/config.mirror' in object.metadata.annotations)",
            }],
            "variables": [{"name": "images", "expression": POD_IMAGES}],
            "validations": [{
                "expression": format!(
                    "variables.images.all(image, {}.exists(prefix, image.startsWith(prefix)) || image in {})",
                    cel_list(&our_prefixes(site)),
                    cel_list(&named)
                ),
                "message": format!(
                    "images must come from {} (signed, verified by {POLICY_NAME}) or be one of the allowed images by digest; see policies/README.md",
                    site.publish_prefix
                ),
            }],
        },
    });
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": ALLOW_LIST_NAME},
        "spec": {
            "policyName": ALLOW_LIST_NAME,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {
                    "matchExpressions": [{
                        "key": "kubernetes.io/metadata.name",
                        "operator": "NotIn",
                        "values": site.exempt_namespaces,
                    }],
                },
            },
        },
    });
    vec![policy, binding]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEtest\n-----END PUBLIC KEY-----\n";

    fn keys(key: Option<&str>) -> Vec<String> {
        key.map(str::to_string).into_iter().collect()
    }

    fn rendered(site: &Site, key: Option<&str>) -> String {
        manifests(site, &keys(key))
            .unwrap()
            .iter()
            .map(|m| format!("==> {}\n{}", m.path, render(m).unwrap()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every generated file, without a key (as committed today) and with one.
    #[test]
    fn generated_files() {
        insta::assert_snapshot!("without_key", rendered(&Site::ours(), None));
        insta::assert_snapshot!("with_key_and_digests", rendered(&published(), Some(KEY)));
        // The other policy API, with two keys (a rotation): only the policy changes.
        let site = Site {
            policy_api: PolicyApi::ImageValidatingPolicy,
            ..published()
        };
        let two = vec![KEY.to_string(), KEY2.to_string()];
        let policy = manifests(&site, &two)
            .unwrap()
            .into_iter()
            .find(|m| m.path.ends_with(&format!("{POLICY_NAME}.yaml")))
            .unwrap();
        insta::assert_snapshot!("image_validating_policy_two_keys", render(&policy).unwrap());
    }

    /// A site with everything set: digests, egress, a runtime class, an alias.
    fn published() -> Site {
        Site {
            runner_image_digest: Some(format!("sha256:{}", "a".repeat(64))),
            job_image: Some("registry.internal/ci/job@sha256:0123".into()),
            egress: vec![
                crate::model::settings::Egress {
                    purpose: "Forgejo",
                    cidrs: &["10.20.0.0/24"],
                    tcp_ports: &[443],
                },
                crate::model::settings::Egress {
                    purpose: "the registry (its pods listen on 5000)",
                    cidrs: &["10.30.0.10/32", "10.30.0.11/32"],
                    tcp_ports: &[5000],
                },
            ],
            check_runtime_class: Some("gvisor".into()),
            registry_aliases: vec!["Registry.Example.Corp".into()],
            ..Site::ours()
        }
    }

    const KEY2: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEnext\n-----END PUBLIC KEY-----\n";

    /// Every key is an entry of its own in the signature's attestor set and
    /// in each attestation's: any one of them admits the image.
    #[test]
    fn every_key_verifies_signatures_and_attestations() {
        let two = vec![KEY.to_string(), KEY2.to_string()];
        let files = manifests(&Site::ours(), &two).unwrap();
        let policy = &files
            .iter()
            .find(|m| m.path.ends_with(&format!("{POLICY_NAME}.yaml")))
            .unwrap()
            .objects[0];
        let verify = &policy["spec"]["rules"][0]["verifyImages"][0];
        let sets = std::iter::once(&verify["attestors"]).chain(
            verify["attestations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| &a["attestors"]),
        );
        let mut checked = 0;
        for set in sets {
            assert_eq!(set.as_array().unwrap().len(), 1, "{set}");
            assert_eq!(set[0]["count"], 1, "{set}");
            let keys: Vec<&str> = set[0]["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["keys"]["publicKeys"].as_str().unwrap())
                .collect();
            assert_eq!(keys, vec![KEY.trim_end(), KEY2.trim_end()]);
            checked += 1;
        }
        assert_eq!(
            checked, 4,
            "the signature, two SBOM attestations and the provenance"
        );
        let types: Vec<&str> = verify["attestations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "https://spdx.dev/Document",
                "https://cyclonedx.org/bom",
                "https://slsa.dev/provenance/v1"
            ]
        );
        // The ImageValidatingPolicy: one attestor per key, any one suffices.
        let site = Site {
            policy_api: PolicyApi::ImageValidatingPolicy,
            ..Site::ours()
        };
        let policy = image_validating_policy(&site, &two);
        assert_eq!(policy["spec"]["attestors"].as_array().unwrap().len(), 2);
        for validation in policy["spec"]["validations"].as_array().unwrap() {
            let expression = validation["expression"].as_str().unwrap();
            assert!(
                expression.contains("[attestors.key0]) > 0 || "),
                "{expression}"
            );
            assert!(expression.contains("[attestors.key1]) > 0"), "{expression}");
        }
    }

    /// Our path in its other spellings is verified; the allow-list admits
    /// exactly those and the named digests.
    #[test]
    fn our_registry_is_matched_in_every_spelling_the_policies_know() {
        let site = published();
        assert_eq!(
            our_prefixes(&site),
            [
                "registry.internal/stagex-images/",
                "registry.internal:443/stagex-images/",
                "registry.example.corp/stagex-images/",
                "registry.example.corp:443/stagex-images/",
            ]
        );
        let with_port = Site {
            publish_prefix: "registry.internal:5000/x".into(),
            ..Site::ours()
        };
        assert_eq!(our_prefixes(&with_port), ["registry.internal:5000/x/"]);
        let allow = allow_list(&site);
        let expression = allow[0]["spec"]["validations"][0]["expression"]
            .as_str()
            .unwrap();
        assert!(
            expression.contains("'registry.internal:443/stagex-images/'"),
            "{expression}"
        );
        assert!(
            expression.contains(&format!("'{}'", site.dind_image)),
            "{expression}"
        );
        assert_eq!(
            allow[1]["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]
                ["values"],
            json!(["kube-system", "kube-public", "kube-node-lease", "kyverno"])
        );
        // The webhook only sees pods naming our registry, in any case.
        let policy = cluster_policy(&site, &[KEY.to_string()]);
        let condition = policy["spec"]["webhookConfiguration"]["matchConditions"][0]["expression"]
            .as_str()
            .unwrap();
        assert!(
            condition.contains("image.lowerAscii().startsWith(prefix)"),
            "{condition}"
        );
    }

    /// The runner stops gracefully: its shutdown_timeout ends before the
    /// pod's grace period; the registration is written, not copied.
    #[test]
    fn the_runner_finishes_its_job_before_the_grace_period_ends() {
        for file in manifests(&Site::ours(), &[]).unwrap() {
            let mut timeout = None;
            let mut grace = None;
            for object in &file.objects {
                if object["kind"] == "ConfigMap" {
                    let config: serde_yaml::Value =
                        serde_yaml::from_str(object["data"]["config.yaml"].as_str().unwrap())
                            .unwrap();
                    let text = config["runner"]["shutdown_timeout"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    timeout = Some(text.trim_end_matches('s').parse::<u64>().unwrap());
                }
                if object["kind"] == "Deployment" {
                    let spec = &object["spec"]["template"]["spec"];
                    grace = spec["terminationGracePeriodSeconds"].as_u64();
                    let command =
                        serde_json::to_string(&spec["initContainers"][0]["command"]).unwrap();
                    assert!(command.contains("umask 077"), "{command}");
                    assert!(!command.contains("\"cp\""), "{command}");
                }
            }
            if let (Some(timeout), Some(grace)) = (timeout, grace) {
                assert!(
                    timeout > 0 && timeout + 30 <= grace,
                    "{}: {timeout}s vs {grace}s",
                    file.path
                );
            }
        }
    }

    /// Whether `image` names its bytes: `…@sha256:` and 64 lowercase hex
    /// digits, so the placeholder `@sha256:unpublished-…` is not.
    fn pinned_by_digest(image: &str) -> bool {
        image.rsplit_once("@sha256:").is_some_and(|(name, hex)| {
            !name.is_empty()
                && hex.len() == 64
                && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
    }

    /// Every container image of the Deployments of a published site is
    /// pinned by a real digest (guards runner_image using the published
    /// digest); an unpublished site's runner is the placeholder, which is
    /// not taken for a pin.
    #[test]
    fn published_deployments_pull_every_image_by_digest() {
        let images = |site: &Site| -> Vec<String> {
            let mut images = Vec::new();
            for file in manifests(site, &keys(Some(KEY))).unwrap() {
                for object in file.objects.iter().filter(|o| o["kind"] == "Deployment") {
                    let spec = &object["spec"]["template"]["spec"];
                    for list in ["initContainers", "containers"] {
                        for container in spec[list].as_array().unwrap() {
                            images.push(container["image"].as_str().unwrap().to_string());
                        }
                    }
                }
            }
            images
        };
        let published = images(&published());
        assert!(published.len() >= 6, "{published:?}");
        for image in &published {
            assert!(pinned_by_digest(image), "{image}");
        }
        let unpublished = images(&Site {
            runner_image_digest: None,
            ..Site::ours()
        });
        let placeholders: Vec<&String> = unpublished
            .iter()
            .filter(|image| !pinned_by_digest(image))
            .collect();
        assert!(!placeholders.is_empty(), "{unpublished:?}");
        for image in placeholders {
            assert!(
                image.ends_with("/forgejo-runner@sha256:unpublished-set-RUNNER_IMAGE_DIGEST"),
                "{image}"
            );
        }
    }

    #[test]
    fn only_the_dind_container_is_privileged() {
        let files = manifests(&Site::ours(), &keys(Some(KEY))).unwrap();
        let mut deployments = 0;
        for file in &files {
            for object in &file.objects {
                if object["kind"] != "Deployment" {
                    continue;
                }
                deployments += 1;
                let spec = &object["spec"]["template"]["spec"];
                assert_eq!(spec["automountServiceAccountToken"], false);
                let containers = spec["initContainers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .chain(spec["containers"].as_array().unwrap());
                for container in containers {
                    let privileged = container["securityContext"]["privileged"] == true;
                    assert_eq!(privileged, container["name"] == "dind", "{container}");
                    let image = container["image"].as_str().unwrap();
                    assert!(image.contains("@sha256:"), "{image}");
                    assert!(container["resources"]["limits"].is_object(), "{container}");
                }
                // The Secret is mounted read-only into the copy, and only there.
                let registration = spec["initContainers"][0]["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["name"] == "registration")
                    .unwrap();
                assert_eq!(registration["readOnly"], true);
                let runner_mounts =
                    serde_json::to_string(&spec["containers"][0]["volumeMounts"]).unwrap();
                assert!(!runner_mounts.contains("registration"), "{runner_mounts}");
                assert_eq!(spec["securityContext"]["fsGroup"], 1000);
                // The DinD sidecar starts first (a native sidecar), the wiper after it.
                assert_eq!(spec["initContainers"][1]["name"], "dind");
                assert_eq!(spec["initContainers"][1]["restartPolicy"], "Always");
                assert_eq!(spec["initContainers"][2]["name"], "engine-wiper");
                assert_eq!(spec["initContainers"][2]["restartPolicy"], "Always");
            }
        }
        assert_eq!(deployments, 2, "a release runner and a pull-request runner");
    }

    #[test]
    fn the_gaps_are_named_and_vanish_when_filled() {
        let site = Site::ours();
        assert_eq!(gaps(&site, &[]).len(), 5, "{:?}", gaps(&site, &[]));
        let filled = published();
        assert!(gaps(&filled, &keys(Some(KEY))).is_empty());
        let text = rendered(&filled, Some(KEY));
        assert!(!text.contains("NOT READY"), "{text}");
        assert!(!text.contains("unpublished"), "{text}");
    }

    #[test]
    fn the_transparency_log_setting_reaches_the_policy() {
        let with_log = Site {
            transparency_log: true,
            ..Site::ours()
        };
        let text = rendered(&with_log, Some(KEY));
        assert!(!text.contains("ignoreTlog"), "{text}");
        assert!(rendered(&Site::ours(), Some(KEY)).contains("ignoreTlog: true"));
    }
}
