// The JavaScript hello Worker of the load benchmark (benches/js.sh), run by Tenantry and workerd.
export default {
  async fetch(request) {
    return new Response("Hello, world!\n");
  },
};
