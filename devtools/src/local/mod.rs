//! A function run locally, as Lambda runs it: the fake platform, an extension, and the user's
//! handler under AWS's runtime interface client (`function`), the cache reads it made
//! (`reads`), and the `lsc-dev lambda` command (`command`).

pub mod command;
pub mod function;
pub mod handler;
pub mod reads;
