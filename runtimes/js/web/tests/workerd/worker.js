// Runs tests/cases.js in workerd and answers with the described results as JSON.
import "./cases.js";
export default {
  async fetch() {
    return new Response(JSON.stringify(await globalThis.runCases(), null, 1), {
      headers: { "content-type": "application/json" },
    });
  },
};
