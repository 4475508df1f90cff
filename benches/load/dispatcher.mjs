// The dispatch Worker of Cloudflare's Workers for Platforms documents, verbatim (the dispatch-hop
// benchmark's JavaScript row, benches/dispatch.sh): the first label of the host names the user
// Worker.
export default { async fetch(request, env) {
  const customerName = new URL(request.url).hostname.split(".")[0];
  const userWorker = env.DISPATCHER.get(customerName);
  return userWorker.fetch(request);
} };
