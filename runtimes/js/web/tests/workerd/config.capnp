# workerd config for recording tests/workerd-expected.json (see record.sh).
using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [(name = "main", worker = (
    modules = [
      (name = "worker.js", esModule = embed "worker.js"),
      (name = "cases.js", esModule = embed "../cases.js"),
    ],
    compatibilityDate = "2025-09-01",
  ))],
  sockets = [(name = "http", address = "127.0.0.1:0", http = (), service = "main")],
);
