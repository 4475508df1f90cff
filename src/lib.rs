//! The `tenantry` binary's library: the config file, deploying it into the data directory, and
//! running the data plane and the admin API. `src/main.rs` is the command line on top.
//!
//! ```no_run
//! let config = tenantry::config::Config::load("examples/tenantry.toml".as_ref()).unwrap();
//! let node = tenantry::serve::Node::start(&config).unwrap();
//! println!("listening on {}", node.local_addr());
//! node.shutdown();
//! ```

pub mod admin;
pub mod certificates;
pub mod client;
pub mod config;
pub mod control;
pub mod deploy;
#[doc(hidden)]
pub mod fuzzing;
pub mod logging;
pub mod plane;
pub mod serve;
