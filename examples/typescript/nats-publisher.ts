// A long-running Node service publishing typed events straight to JetStream with nats.js, with
// the same subject, envelope and de-duplication as the Rust publisher.
import { connect, headers } from "nats";
import type { CloudEvent, EventType } from "../../schemas/ts/events";

const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const js = nc.jetstream();

export async function publish<T extends EventType>(tenant: string, event: CloudEvent<T>): Promise<number> {
  const h = headers();
  h.set("Content-Type", "application/cloudevents+json");
  const envelope: CloudEvent<T> = { ...event, tenantid: tenant };
  // The stream drops a repeated Nats-Msg-Id inside its duplicate window: <tenant>:<id>.
  const ack = await js.publish(`events.${tenant}.${event.type}`, JSON.stringify(envelope), {
    msgID: `${tenant}:${event.id}`,
    headers: h,
  });
  return ack.seq;
}

// The same event later: a schedule on delayed.<tenant>.e.<id> (README "Delayed events") that the
// server fires into events.<tenant>.<type> at `at`. Ids outside [A-Za-z0-9_-] are escaped in the
// subject, each such byte as =XX, so `conveyor cancel` finds them; a UUID needs no escaping.
export async function publishAt<T extends EventType>(tenant: string, event: CloudEvent<T>, at: Date): Promise<number> {
  const h = headers();
  h.set("Content-Type", "application/cloudevents+json");
  h.set("Nats-Schedule", `@at ${at.toISOString()}`);
  h.set("Nats-Schedule-Target", `events.${tenant}.${event.type}`);
  h.set("Nats-TTL", "never");
  const envelope: CloudEvent<T> = { ...event, tenantid: tenant };
  const ack = await js.publish(`delayed.${tenant}.e.${event.id}`, JSON.stringify(envelope), {
    msgID: `${tenant}:${event.id}`,
    headers: h,
  });
  return ack.seq;
}

await publish("acme", {
  specversion: "1.0",
  id: "payout-p-1",
  source: "billing-service",
  type: "payout.requested",
  time: new Date().toISOString(),
  data: {
    payout_id: "p-1",
    creator_id: "cr-9",
    amount: { amount_minor: 12_000, currency: "EUR" },
    method: "bank_transfer",
    requested_at: new Date().toISOString(),
  },
});
await nc.drain();
