//! Tools for plugin authors: `eddy plugin test` (a mock host on the command line, through
//! the real runtime), `eddy plugin new` (a project scaffold per language) and `eddy
//! plugin compile` (precompiling into the compiled-code cache).

mod diff;
pub mod harness;
pub mod scaffold;
pub mod test;
