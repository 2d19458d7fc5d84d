//! `cargo xtask run-example NAME`: build an example (and the images it builds
//! on) with `build`'s own plan and runner, load its archive into the engine,
//! run it once, and compare what it prints with `examples/NAME/expected-output`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::args::{EngineArgs, JobsArg};
use super::build::{self, plan::ImageBuild, run::run_builds};
use crate::error::fail;
use crate::model::catalog::Catalog;
use crate::model::settings;
use crate::pipeline::{self, Step};
use crate::records;
use crate::report::Outcome;
use crate::tools::process::{Cmd, Env};
use crate::tools::{self};

/// The file beside an example's Containerfile that holds what it must print.
pub const EXPECTED_OUTPUT: &str = "expected-output";

/// Build an example, run it on the engine, and check what it prints against examples/NAME/expected-output.
#[derive(Debug, Args)]
pub struct RunExample {
    /// The example (a folder under examples/).
    pub name: String,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub jobs: JobsArg,
}

/// One example's run, planned: the builds, the archive they leave, the
/// commands that load and run it, and the output expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExamplePlan {
    pub example: String,
    pub builds: Vec<ImageBuild>,
    pub archive: PathBuf,
    pub expected: String,
}

impl ExamplePlan {
    /// `docker load` of the built archive (prints the image it loaded).
    pub fn load_argv(&self) -> Vec<String> {
        vec![
            "docker".into(),
            "load".into(),
            "--input".into(),
            self.archive.display().to_string(),
        ]
    }
}

/// `docker run` of a loaded image: no network, removed afterwards.
pub fn run_argv(image: &str) -> Vec<String> {
    ["docker", "run", "--rm", "--network=none", image]
        .map(String::from)
        .to_vec()
}

/// The image `docker load` says it loaded (an untagged archive loads by ID).
pub fn loaded_image(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        line.strip_prefix("Loaded image ID: ")
            .or_else(|| line.strip_prefix("Loaded image: "))
            .map(|image| image.trim().to_string())
    })
}

/// Plan the run of `name`, purely (the expected output is read by the caller).
pub fn plan(
    catalog: &Catalog,
    name: &str,
    expected: &str,
    options: &build::plan::BuildOptions,
) -> Result<ExamplePlan> {
    let Some(image) = catalog.image(name) else {
        let examples: Vec<&str> = catalog
            .images
            .iter()
            .filter(|i| is_example(&i.dir))
            .map(|i| i.name.as_str())
            .collect();
        bail!(
            "no example `{name}`: the examples are {}",
            examples.join(", ")
        );
    };
    if !is_example(&image.dir) {
        bail!(
            "`{name}` is an image, not an example ({}/): run-example runs folders under {}/",
            image.dir,
            settings::EXAMPLES_DIR
        );
    }
    let builds = build::plan::plan(catalog, &[name.to_string()], options)?;
    Ok(ExamplePlan {
        example: name.to_string(),
        builds,
        archive: records::archive_path(&options.root, name),
        expected: expected.trim_end().to_string(),
    })
}

fn is_example(dir: &str) -> bool {
    dir.starts_with(&format!("{}/", settings::EXAMPLES_DIR))
}

/// Whether the example printed what it should: a failed check otherwise,
/// showing both.
pub fn compare(example: &str, expected: &str, printed: &str) -> Result<()> {
    let printed = printed.trim_end();
    if printed == expected {
        return Ok(());
    }
    fail(format!(
        "`{example}` printed\n  {}\nbut {}/{example}/{EXPECTED_OUTPUT} expects\n  {}",
        printed.replace('\n', "\n  "),
        settings::EXAMPLES_DIR,
        expected.replace('\n', "\n  ")
    ))
}

/// The last lines of a build's log, to show beside its failure.
fn log_tail(log: &Path, lines: usize) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return format!("(no build log at {})", log.display());
    };
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl RunExample {
    pub fn run(self, root: &Path) -> Result<()> {
        let catalog = Catalog::load(root)?;
        let dir = catalog
            .image(&self.name)
            .map(|image| root.join(&image.dir))
            .unwrap_or_else(|| root.join(settings::EXAMPLES_DIR).join(&self.name));
        let expected_path = dir.join(EXPECTED_OUTPUT);
        // Unknown names fail as usage before the file is looked for.
        let options = build::options(root, &self.engine)?;
        let expected = if catalog.image(&self.name).is_some() {
            std::fs::read_to_string(&expected_path).with_context(|| {
                format!(
                    "reading {}: write the line the example must print there",
                    expected_path.display()
                )
            })?
        } else {
            String::new()
        };
        let planned = plan(&catalog, &self.name, &expected, &options)?;
        let env = Env::new();
        tools::require(&pipeline::tools_for(&[Step::Build]), &env, "run-example")?;
        let run = run_builds(&planned.builds, self.jobs.get(), &env, Step::Build.name());
        for (build, report) in planned.builds.iter().zip(&run.reports) {
            if let Outcome::Failed(why) = &report.outcome {
                return fail(format!(
                    "`{}` did not build: {why}\n--- the end of {} ---\n{}",
                    build.image,
                    build.log_file().display(),
                    log_tail(&build.log_file(), 40)
                ));
            }
        }
        if !run.built.contains_key(&planned.example) {
            return fail(format!("`{}` was not built", planned.example));
        }
        let loaded = Cmd::from_argv(&planned.load_argv()).envs(&env).read()?;
        let Some(image) = loaded_image(&loaded) else {
            bail!("`docker load` named no image it loaded: {loaded}");
        };
        let mut command = Cmd::from_argv(&run_argv(&image));
        command.envs(&env);
        let output = command.try_output()?;
        let printed = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return fail(format!(
                "`{}` exited with {}: {}{}",
                planned.example,
                output.status,
                printed,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        compare(&planned.example, &planned.expected, &printed)?;
        crate::ui::say!(
            "[{}] printed the expected output: {}",
            planned.example,
            planned.expected
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> build::plan::BuildOptions {
        build::plan::BuildOptions::new(Path::new("/repo"), 1700000000)
    }

    /// Each real example builds on its base, which is built first, and has
    /// the line it must print beside it.
    #[test]
    fn the_examples_are_planned_with_their_bases() {
        let root = crate::files::project_root();
        let catalog = Catalog::load(&root).unwrap();
        let mut planned = Vec::new();
        for (example, base) in [
            ("go-hello", "base-go"),
            ("node-hello", "base-nodejs"),
            ("python-hello", "base-python"),
        ] {
            let expected =
                std::fs::read_to_string(root.join("examples").join(example).join(EXPECTED_OUTPUT))
                    .unwrap();
            assert!(!expected.trim().is_empty(), "{example}");
            let plan = plan(&catalog, example, &expected, &options()).unwrap();
            let order: Vec<&str> = plan.builds.iter().map(|b| b.image.as_str()).collect();
            assert_eq!(order, [base, example], "{example}");
            assert!(plan.builds[1].depends_on.contains(&base.to_string()));
            assert!(!plan.builds[1].network, "{example} builds offline");
            planned.push(format!(
                "{example}: {}\n  {}\n  expects: {}",
                order.join(" → "),
                plan.load_argv().join(" "),
                plan.expected
            ));
        }
        insta::assert_snapshot!(planned.join("\n"));
    }

    #[test]
    fn only_examples_run() {
        let catalog = Catalog::load(&crate::files::project_root()).unwrap();
        let error = plan(&catalog, "base", "", &options()).unwrap_err();
        assert!(error.to_string().contains("is an image, not an example"));
        let error = plan(&catalog, "nope", "", &options()).unwrap_err();
        assert!(error.to_string().contains("go-hello"), "{error}");
    }

    #[test]
    fn output_is_compared_line_for_line() {
        assert!(compare("x", "hello", "hello\n").is_ok());
        let error = compare("x", "hello", "goodbye\n").unwrap_err();
        assert!(error.downcast_ref::<crate::error::Failure>().is_some());
        assert!(error.to_string().contains("goodbye"), "{error}");
        assert_eq!(
            loaded_image("Loaded image ID: sha256:abc\n").as_deref(),
            Some("sha256:abc")
        );
        assert_eq!(loaded_image("nothing"), None);
        assert_eq!(run_argv("sha256:abc")[3], "--network=none");
    }
}
