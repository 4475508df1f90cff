# workerd running the same hello Worker as Tenantry in benches/js.sh (Cloudflare's own runtime,
# from npm), bound to loopback.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [ (name = "main", worker = .hello) ],
  sockets = [ (name = "http", address = "127.0.0.1:18091", http = (), service = "main") ],
);

const hello :Workerd.Worker = (
  modules = [ (name = "hello.mjs", esModule = embed "hello.mjs") ],
  compatibilityDate = "2024-09-01",
);
