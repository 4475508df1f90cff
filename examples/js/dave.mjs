// An ES-module Worker, as Cloudflare's documents write them. Served by `scripts/run.sh`:
//   curl -H 'Host: dave.example.test' 'http://127.0.0.1:8080/?name=you'
//   curl -H 'Host: dave.example.test' http://127.0.0.1:8080/about
import { greeting } from "./lib/greeting.mjs";
import about from "./about.txt";

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/about") {
      return new Response(about, { headers: { "content-type": "text/plain;charset=UTF-8" } });
    }
    const name = url.searchParams.get("name") ?? "world";
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(name));
    return Response.json({
      message: greeting(env.GREETING, name),
      sha256: [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join(""),
      method: request.method,
    });
  },
};
