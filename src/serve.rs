//! `tenantry serve`: deploy the config into the data directory, then run the data plane.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tenantry_core::Engine;
use tenantry_ingress::ServerHandle;
use tenantry_ingress::dispatch::{Plane, Snapshot};
use tenantry_ingress::route::Router;
use tenantry_loader::Store;

use crate::config::Config;
use crate::deploy;

/// A running node: the data plane on every core, serving what the data directory holds.
pub struct Node {
    server: ServerHandle,
    plane: Arc<Plane>,
}

impl Node {
    /// Deploys `config` into its data directory and starts serving. Returns once every core listens.
    pub fn start(config: &Config) -> anyhow::Result<Node> {
        let engine = Engine::new(&config.engine)?;
        engine.start_epoch_ticker();
        let store = Store::open(&config.data_dir, engine.clone())
            .with_context(|| format!("opening data directory {}", config.data_dir.display()))?;
        let report = deploy::apply(config, &store)?;
        tracing::info!(
            workers = report.deployed,
            namespaces = report.namespaces,
            "deployed the config"
        );

        let snapshot = snapshot(config, &store)?;
        let plane = Plane::new(
            snapshot,
            engine,
            store.artifacts().clone(),
            config.workers_per_core,
        );
        let for_cores = plane.clone();
        let server =
            tenantry_ingress::start(config.server.clone(), move |_core| for_cores.dispatcher())
                .with_context(|| format!("listening on {}", config.server.addr))?;
        Ok(Node { server, plane })
    }

    /// The address the data plane listens on (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The shared plane, to publish new snapshots.
    pub fn plane(&self) -> &Arc<Plane> {
        &self.plane
    }

    /// Stops accepting connections, lets in-flight requests finish and joins every core.
    pub fn shutdown(self) {
        self.server.shutdown();
        self.server.join();
    }
}

/// Opens every namespace index in the data directory (recompiling artifacts first when they
/// were built by another engine) and builds the routing snapshot.
fn snapshot(config: &Config, store: &Store) -> anyhow::Result<Snapshot> {
    let mut namespaces = HashMap::new();
    for name in store.namespaces()? {
        let Some(index) = store.open_index(&name)? else {
            continue;
        };
        let index = store
            .ensure_compiled(index)
            .with_context(|| format!("recompiling namespace `{name}` for this engine"))?;
        namespaces.insert(name, index);
    }
    Ok(Snapshot {
        router: Router::new(config.routes.clone()),
        namespaces,
        default_limits: config.default_limits,
    })
}
