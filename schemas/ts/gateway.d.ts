// The request and answer bodies of the Conveyor HTTP gateway (POST /v1/events).
// Written by `python3 dev.py schemas`; see README "HTTP gateway".
import type { EventMap, EventType } from "./events";

export type * from "./events";

/** The minimal form (`Content-Type: application/json`) for hand-written calls. */
export interface GatewayEvent<T extends EventType = EventType> {
  type: T;
  data: EventMap[T];
  /** Give one to make retries safe: the same id is stored once. Default: a new id. */
  id?: string;
  source?: string;
  /** RFC 3339. */
  time?: string;
  correlation_id?: string;
  causation_id?: string;
  /** Deliver this long after it is stored, e.g. "10m". */
  delay?: string;
  /** Deliver at this time (RFC 3339). */
  deliver_at?: string;
}

/** What happened to one event. */
export interface GatewayEventResult {
  id: string;
  /**
   * `stored`; `duplicate` (stored by an earlier request with this id); `not_stored`; or
   * `unknown` (the stream's answer was lost: retry with the same id, it is stored once).
   */
  status: "stored" | "duplicate" | "not_stored" | "unknown";
  sequence?: number;
  /** When a delayed event becomes visible (RFC 3339). */
  deliver_at?: string;
  error?: string;
}

/** The body of a `202 Accepted`: every event is stored. */
export interface GatewayAccepted {
  events: GatewayEventResult[];
}

/** The body of every refusal (4xx, 5xx). */
export interface GatewayError {
  error: {
    status: number;
    /**
     * `unauthorized`, `forbidden_tenant`, `forbidden_type`, `invalid_json`, `invalid_request`,
     * `invalid_event`, `unknown_type`, `invalid_data`, `too_deep`, `too_large`,
     * `unsupported_media_type`, `timeout`, `rate_limited`, `unavailable`, ...
     */
    code: string;
    message: string;
    /** JSON Pointer into the request body (in a batch, from the event's index: `/3/data/x`). */
    pointer?: string;
    violations?: { pointer: string; message: string }[];
  };
  /** After publishing began (a partly stored batch, a lost answer): each event's fate. */
  events?: GatewayEventResult[];
}
