// A service-worker script, the other syntax Cloudflare takes (bindings are globals here):
//   curl -H 'Host: erin.example.test' http://127.0.0.1:8080/
addEventListener("fetch", (event) => {
  event.respondWith(new Response(`${GREETING} from a service worker at ${new URL(event.request.url).pathname}\n`));
});
