// charter serve from Node.js 20 or later: built-in fetch (kept-alive connections), no npm packages.
//
//   CHARTER_URL=http://127.0.0.1:8080 CHARTER_TOKEN=charter_… node examples/http/client.mjs
//
// Run as a script, it decides once, as a batch and about one customer, then searches the log
// (with CHARTER_LOG_TOKEN, or CHARTER_TOKEN) and prints one JSON line per step; a refused step
// prints its error ({"step", "error": {"status", "code", "message", "hint"}}) and the next goes on.
// Imported, it is a small client: `new Charter(url, token).decide("access", facts, now)`.

import { readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";

/** An error the service answered, in its one shape; status 0 when there was no answer. */
export class CharterError extends Error {
  constructor(status, { code, message, hint = null, errors = [] }) {
    super(`${message} [${code}, HTTP ${status}]`);
    this.name = "CharterError";
    this.status = status;
    this.code = code;
    this.hint = hint;
    this.errors = errors; // bad facts: one entry per field
  }
}

export class Charter {
  constructor(baseUrl, token = null, { timeoutMs = 30000 } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.token = token;
    this.timeoutMs = timeoutMs;
  }

  async request(method, path, body = undefined) {
    const headers = { accept: "application/json" };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    let response;
    try {
      response = await fetch(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new CharterError(0, { code: "C088", message: `no answer from ${this.baseUrl}: ${err.message}` });
    }
    const text = await response.text();
    let data = null;
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
    if (response.ok) return data;
    const shape = data && data.error ? data.error : { code: "C088", message: text.slice(0, 200) };
    throw new CharterError(response.status, shape);
  }

  decide(domain, facts, now, { explain = false } = {}) {
    const query = explain ? "?explain=true" : "";
    return this.request("POST", `/v1/decide/${encodeURIComponent(domain)}${query}`, { facts, now });
  }

  decideBatch(domain, items, now) {
    return this.request("POST", `/v1/decide/${encodeURIComponent(domain)}/batch`, { facts: items, now });
  }

  customer(customer, now, extra = {}) {
    return this.request("POST", "/v1/customer", { customer, now, ...extra });
  }

  records(filters = {}) {
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v != null));
    return this.request("GET", `/v1/log/records?${query}`);
  }

  record(id) {
    return this.request("GET", `/v1/log/records/${encodeURIComponent(id)}`);
  }

  verify() {
    return this.request("POST", "/v1/log/verify", {});
  }

  replay(filters = {}) {
    return this.request("POST", "/v1/log/replay", filters);
  }

  job(id) {
    return this.request("GET", `/v1/jobs/${encodeURIComponent(id)}`);
  }

  async wait(id, { everyMs = 200, timeoutMs = 300000 } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = await this.job(id);
      if (job.state === "done" || job.state === "failed") return job;
      if (Date.now() > deadline) throw new Error(`job ${id} still ${job.state}`);
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  }

  health() {
    return this.request("GET", "/health");
  }
}

const NOW = "2025-06-30T00:00:00Z";

async function step(name, run) {
  try {
    console.log(JSON.stringify({ step: name, ...(await run()) }));
  } catch (err) {
    if (!(err instanceof CharterError)) throw err;
    const { status, code, hint } = err;
    const message = err.message.replace(/ \[[^\]]*\]$/, "");
    console.log(JSON.stringify({ step: name, error: { status, code, message, hint } }));
  }
}

async function main() {
  const url = process.env.CHARTER_URL ?? "http://127.0.0.1:8080";
  const charter = new Charter(url, process.env.CHARTER_TOKEN ?? null);
  const auditor = new Charter(url, process.env.CHARTER_LOG_TOKEN ?? process.env.CHARTER_TOKEN ?? null);
  const here = new URL(".", import.meta.url);
  const customer = JSON.parse(await readFile(new URL("../customer.json", here), "utf-8"));
  const request = {
    subject: { id: "u009", roles: ["agent"], department: "west" },
    action: "read",
    purpose: "service",
    resource: { customer: customer.id, record_type: "customer_profile", record: { name: customer.name } },
  };

  await step("decide", async () => {
    const d = await charter.decide("access", request, NOW);
    return { effect: d.outputs.effect, decision_id: d.decision_id, bundle_version: d.bundle_version };
  });
  await step("batch", async () => {
    const items = [request, { ...request, action: "delete", purpose: "audit" }, { subject: "nobody" }];
    const b = await charter.decideBatch("access", items, NOW);
    const results = b.results.map((r) => (r.error ? { index: r.index, error: r.error.code } : { index: r.index, effect: r.outputs.effect }));
    return { count: b.count, decided: b.decided, errors: b.errors, results };
  });
  await step("customer", async () => {
    const ticket = { id: "T1", category: "complaint", severity: "major", complexity: "simple", opened_at: NOW };
    const access = { subject: request.subject, action: "read", purpose: "service", fields: ["name", "phone"] };
    const c = await charter.customer(customer, NOW, { tickets: [ticket], access });
    return {
      customer: c.customer,
      value_tier: c.decisions.tiering?.outputs?.value_tier ?? null,
      domains: Object.keys(c.decisions).sort(),
      decision_ids: c.decision_ids.length,
    };
  });
  await step("records", async () => {
    const found = await auditor.records({ customer: customer.id, domain: "access", limit: 1000 });
    return { count: found.count, decision_ids: found.records.map((r) => r.decision_id) };
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  await main();
}
