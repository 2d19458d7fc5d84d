//! Development scaffolding, hidden from `--help`: the test services, the test
//! command, stand-in StageX images, the offline demo, the benchmarks and the
//! generated documentation pages. None of it installs anything on the host;
//! what it fetches lives under target/.

pub mod bench;
pub mod demo;
pub mod docs;
pub mod mutants;
pub mod schemas;
pub mod standins;
pub mod test_env;
pub mod test_suite;
