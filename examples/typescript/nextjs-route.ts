// app/api/checkout/route.ts: a Next.js route handler that publishes a typed order.created
// event through the Conveyor HTTP gateway and answers within the request.
import type { CloudEvent, EventType, GatewayAccepted, GatewayError, OrderCreated } from "../../schemas/ts/gateway";

const GATEWAY = process.env.CONVEYOR_GATEWAY_URL ?? "http://127.0.0.1:8800";
const API_KEY = process.env.CONVEYOR_API_KEY ?? ""; // conveyor keys create --tenant acme

async function publish<T extends EventType>(event: CloudEvent<T>): Promise<GatewayAccepted> {
  const response = await fetch(`${GATEWAY}/v1/events`, {
    method: "POST",
    headers: {
      "content-type": "application/cloudevents+json",
      authorization: `Bearer ${API_KEY}`,
    },
    body: JSON.stringify(event),
    signal: AbortSignal.timeout(1500),
  });
  if (response.status !== 202) {
    const { error } = (await response.json()) as GatewayError;
    // 429 and 503 carry Retry-After; a retry with the same id is stored once.
    throw new Error(`${error.code} at ${error.pointer ?? "/"}: ${error.message}`);
  }
  return (await response.json()) as GatewayAccepted;
}

export async function POST(request: Request): Promise<Response> {
  const order = (await request.json()) as OrderCreated;
  const accepted = await publish({
    specversion: "1.0",
    id: `order-${order.order_id}`, // one id per order: a retried request is stored once
    source: "/checkout",
    type: "order.created",
    data: order,
  });
  return Response.json({ event: accepted.events[0].id }, { status: 202 });
}
