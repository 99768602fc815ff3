// Generated from the JSON Schemas of the Conveyor event catalog by `python3 dev.py schemas`.
// Do not edit: change the Rust types in schemas/src and regenerate.
/**
 * An amount of money: integer minor units (cents for EUR) and an ISO 4217 currency.
 * Integers avoid the rounding errors of floating point.
 */
export interface Money {
  /**
   * Amount in the currency's minor unit, e.g. 1999 for 19.99 EUR.
   * Checked by the gateway: format: "int64".
   */
  amount_minor: number;
  /**
   * ISO 4217 currency code.
   * Checked by the gateway: pattern: "^[A-Z]{3}$".
   */
  currency: string;
}

/**
 * A line of an order.
 */
export interface OrderLine {
  /**
   * Units ordered (at least 1).
   * Checked by the gateway: format: "uint32", minimum: 1.
   */
  quantity: number;
  /**
   * Stock keeping unit of the product.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  sku: string;
  /**
   * Price of one unit.
   */
  unit_price: Money;
}

/**
 * Why an order was cancelled.
 */
export type CancellationReason = "customer_request" | "payment_failed" | "out_of_stock" | "fraud_suspected";

/**
 * The platform a creator publishes on.
 */
export type Platform = "instagram" | "tiktok" | "youtube" | "other";

/**
 * How a payout is paid.
 */
export type PayoutMethod = "bank_transfer" | "paypal" | "store_credit";

/**
 * The marketing channel of a touchpoint.
 */
export type Channel = "organic_search" | "paid_search" | "social" | "creator" | "email" | "direct" | "referral";

/**
 * The attribution model that assigned credit.
 */
export type AttributionModel = "first_touch" | "last_touch" | "linear" | "time_decay";

/**
 * One touchpoint's share of a conversion.
 */
export interface Credit {
  /**
   * Its share in basis points; the shares of a conversion sum to 10000.
   * Checked by the gateway: format: "uint32", minimum: 0.
   */
  share_bps: number;
  /**
   * The touchpoint.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  touchpoint_id: string;
}

/**
 * A timed piece of a transcript.
 */
export interface TranscriptSegment {
  /**
   * End, in milliseconds from the beginning.
   * Checked by the gateway: format: "uint64", minimum: 0.
   */
  end_ms: number;
  /**
   * Start, in milliseconds from the beginning.
   * Checked by the gateway: format: "uint64", minimum: 0.
   */
  start_ms: number;
  /**
   * The spoken text.
   */
  text: string;
}

/**
 * What the AI step produced for a video.
 */
export type GeneratedKind = "summary" | "chapters" | "captions" | "tags";

/**
 * The file format of an export.
 */
export type ExportFormat = "original" | "web_jpeg" | "zip";

/**
 * What fraud screening decided.
 */
export type Decision = "ALLOW" | "REVIEW" | "BLOCK";

/**
 * A signal that contributed to a fraud score.
 */
export interface Signal {
  /**
   * The signal's name, e.g. `ip_country_mismatch`.
   */
  name: string;
  /**
   * Its weight in the score, in basis points.
   * Checked by the gateway: format: "int32".
   */
  weight_bps: number;
}

/**
 * How urgent a piece of work is.
 */
export type Priority = "HIGH" | "NORMAL";

/**
 * The template an email alert is rendered from.
 */
export type EmailTemplate = "fraud_blocked" | "daily_report" | "webhook_failing" | "rights_expiring";

/**
 * Why moderation flagged a message.
 */
export type ModerationCategory = "spam" | "harassment" | "off_platform_payment" | "personal_data";

/**
 * One finding of an analysis.
 */
export interface Finding {
  /**
   * The line, from 1.
   * Checked by the gateway: format: "uint32", minimum: 0.
   */
  line: number;
  /**
   * What is wrong.
   */
  message: string;
  /**
   * The file.
   */
  path: string;
  /**
   * The rule that found it.
   */
  rule: string;
  /**
   * How serious it is.
   */
  severity: Severity;
}

/**
 * How serious a finding is.
 */
export type Severity = "info" | "warning" | "error";

/**
 * `order.created` (commerce): An order was placed by a customer.
 */
export interface OrderCreated {
  /**
   * The customer who placed it.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  customer_id: string;
  /**
   * The ordered lines.
   */
  lines: OrderLine[];
  /**
   * The order's id in the shop.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  order_id: string;
  /**
   * When the order was placed.
   * Checked by the gateway: format: "date-time".
   */
  placed_at: string;
  /**
   * Total charged, taxes included.
   */
  total: Money;
}

/**
 * `order.fulfilled` (commerce): An order was shipped to its customer.
 */
export interface OrderFulfilled {
  /**
   * When it was shipped.
   * Checked by the gateway: format: "date-time".
   */
  fulfilled_at: string;
  /**
   * The order's id in the shop.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  order_id: string;
  /**
   * Carrier tracking number, if any.
   */
  tracking_number?: string | null;
}

/**
 * `order.cancelled` (commerce): An order was cancelled before fulfilment.
 */
export interface OrderCancelled {
  /**
   * When it was cancelled.
   * Checked by the gateway: format: "date-time".
   */
  cancelled_at: string;
  /**
   * The order's id in the shop.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  order_id: string;
  /**
   * Why it was cancelled.
   */
  reason: CancellationReason;
}

/**
 * `order.refunded` (commerce): Money was returned to the customer for an order.
 */
export interface OrderRefunded {
  /**
   * Amount refunded.
   */
  amount: Money;
  /**
   * The order's id in the shop.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  order_id: string;
  /**
   * The refund's id at the payment provider.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  refund_id: string;
  /**
   * When the refund was issued.
   * Checked by the gateway: format: "date-time".
   */
  refunded_at: string;
}

/**
 * `customer.created` (commerce): A customer account was created.
 */
export interface CustomerCreated {
  /**
   * When the account was created.
   * Checked by the gateway: format: "date-time".
   */
  created_at: string;
  /**
   * The customer's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  customer_id: string;
  /**
   * Contact email.
   * Checked by the gateway: format: "email", pattern: "^[^@\\s]+@[^@\\s]+$", maxLength: 320.
   */
  email: string;
  /**
   * Whether the customer agreed to marketing email.
   */
  marketing_opt_in: boolean;
  /**
   * Display name, if given.
   */
  name?: string | null;
}

/**
 * `review.submitted` (reviews): A customer submitted a product review.
 */
export interface ReviewSubmitted {
  /**
   * Review text.
   */
  body: string;
  /**
   * The reviewing customer.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  customer_id: string;
  /**
   * Language of the text.
   * Checked by the gateway: pattern: "^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$".
   */
  language: string;
  /**
   * The order the review is for, when it comes from a purchase.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  order_id?: string | null;
  /**
   * The reviewed product.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  product_id: string;
  /**
   * Stars, 1 to 5.
   * Checked by the gateway: minimum: 1, maximum: 5.
   */
  rating: number;
  /**
   * The review's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  review_id: string;
  /**
   * When it was submitted.
   * Checked by the gateway: format: "date-time".
   */
  submitted_at: string;
  /**
   * Review title.
   */
  title: string;
}

/**
 * `review.reminder.scheduled` (reviews): A reminder to review a purchase was scheduled for a customer.
 */
export interface ReviewReminderScheduled {
  /**
   * The customer to remind.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  customer_id: string;
  /**
   * Where to send the reminder.
   * Checked by the gateway: format: "email", pattern: "^[^@\\s]+@[^@\\s]+$", maxLength: 320.
   */
  email: string;
  /**
   * The order to review.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  order_id: string;
  /**
   * Reminders already sent for this order (0 for the first).
   * Checked by the gateway: format: "uint32", minimum: 0.
   */
  reminders_sent: number;
  /**
   * When the reminder goes out.
   * Checked by the gateway: format: "date-time".
   */
  send_at: string;
}

/**
 * `creator.applied` (creators): A creator applied to join the tenant's program.
 */
export interface CreatorApplied {
  /**
   * The application's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  application_id: string;
  /**
   * When they applied.
   * Checked by the gateway: format: "date-time".
   */
  applied_at: string;
  /**
   * The creator's contact email.
   * Checked by the gateway: format: "email", pattern: "^[^@\\s]+@[^@\\s]+$", maxLength: 320.
   */
  email: string;
  /**
   * Followers on that platform.
   * Checked by the gateway: format: "uint64", minimum: 0.
   */
  followers: number;
  /**
   * Their main platform.
   */
  platform: Platform;
  /**
   * Their profile URL.
   * Checked by the gateway: format: "uri", pattern: "^https?://[^\\s]+$", maxLength: 2048.
   */
  profile_url: string;
}

/**
 * `creator.approved` (creators): A creator's application was approved.
 */
export interface CreatorApproved {
  /**
   * The application's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  application_id: string;
  /**
   * When it was approved.
   * Checked by the gateway: format: "date-time".
   */
  approved_at: string;
  /**
   * Who approved it.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  approved_by: string;
  /**
   * Commission on attributed sales, in basis points (1% = 100).
   * Checked by the gateway: format: "uint32", minimum: 0.
   */
  commission_bps: number;
  /**
   * The creator's id from now on.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  creator_id: string;
}

/**
 * `creator.rejected` (creators): A creator's application was rejected.
 */
export interface CreatorRejected {
  /**
   * The application's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  application_id: string;
  /**
   * Why, shown to the creator.
   */
  reason: string;
  /**
   * When it was rejected.
   * Checked by the gateway: format: "date-time".
   */
  rejected_at: string;
}

/**
 * `payout.requested` (creators): A creator requested a payout of earned commission.
 */
export interface PayoutRequested {
  /**
   * Amount requested.
   */
  amount: Money;
  /**
   * The creator.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  creator_id: string;
  /**
   * How to pay it.
   */
  method: PayoutMethod;
  /**
   * The payout's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  payout_id: string;
  /**
   * When it was requested.
   * Checked by the gateway: format: "date-time".
   */
  requested_at: string;
}

/**
 * `payout.completed` (creators): A payout was paid out.
 */
export interface PayoutCompleted {
  /**
   * Amount paid.
   */
  amount: Money;
  /**
   * When it was paid.
   * Checked by the gateway: format: "date-time".
   */
  completed_at: string;
  /**
   * The creator.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  creator_id: string;
  /**
   * The payout's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  payout_id: string;
  /**
   * The payment provider's reference.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  provider_reference: string;
}

/**
 * `touchpoint.recorded` (attribution): A visitor interacted with a marketing touchpoint.
 */
export interface TouchpointRecorded {
  /**
   * Campaign id, if any.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  campaign_id?: string | null;
  /**
   * The channel.
   */
  channel: Channel;
  /**
   * Creator id, for creator links and codes.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  creator_id?: string | null;
  /**
   * The landing page.
   * Checked by the gateway: format: "uri", pattern: "^https?://[^\\s]+$", maxLength: 2048.
   */
  landing_url: string;
  /**
   * When it happened.
   * Checked by the gateway: format: "date-time".
   */
  occurred_at: string;
  /**
   * The touchpoint's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  touchpoint_id: string;
  /**
   * The anonymous visitor (or known customer) id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  visitor_id: string;
}

/**
 * `conversion.attributed` (attribution): A conversion (order) was attributed to the touchpoints that led to it.
 */
export interface ConversionAttributed {
  /**
   * When it was attributed.
   * Checked by the gateway: format: "date-time".
   */
  attributed_at: string;
  /**
   * Credit per touchpoint.
   */
  credits: Credit[];
  /**
   * The model used.
   */
  model: AttributionModel;
  /**
   * The order that converted.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  order_id: string;
  /**
   * Revenue of the conversion.
   */
  revenue: Money;
  /**
   * The visitor who converted.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  visitor_id: string;
}

/**
 * `video.upload.completed` (video): An uploaded video finished uploading and is ready for processing.
 */
export interface VideoUploadCompleted {
  /**
   * When the upload finished.
   * Checked by the gateway: format: "date-time".
   */
  completed_at: string;
  /**
   * MIME type, e.g. `video/mp4`.
   */
  content_type: string;
  /**
   * Duration in milliseconds.
   * Checked by the gateway: format: "uint64", minimum: 0.
   */
  duration_ms: number;
  /**
   * File size in bytes.
   * Checked by the gateway: format: "uint64", minimum: 0.
   */
  size_bytes: number;
  /**
   * Where the file is stored.
   * Checked by the gateway: format: "uri", pattern: "^https?://[^\\s]+$", maxLength: 2048.
   */
  storage_url: string;
  /**
   * Who uploaded it.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  uploaded_by: string;
  /**
   * The video's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  video_id: string;
}

/**
 * `video.transcription.started` (video): Transcription of a video started.
 */
export interface VideoTranscriptionStarted {
  /**
   * The transcription job's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  job_id: string;
  /**
   * The expected spoken language, if known.
   * Checked by the gateway: pattern: "^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$".
   */
  language?: string | null;
  /**
   * When it started.
   * Checked by the gateway: format: "date-time".
   */
  started_at: string;
  /**
   * The video's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  video_id: string;
}

/**
 * `video.transcription.completed` (video): Transcription of a video finished.
 */
export interface VideoTranscriptionCompleted {
  /**
   * When it finished.
   * Checked by the gateway: format: "date-time".
   */
  completed_at: string;
  /**
   * The transcription job's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  job_id: string;
  /**
   * The detected language.
   * Checked by the gateway: pattern: "^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$".
   */
  language: string;
  /**
   * The transcript, in timed segments.
   */
  segments: TranscriptSegment[];
  /**
   * The video's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  video_id: string;
  /**
   * Word count of the transcript.
   * Checked by the gateway: format: "uint32", minimum: 0.
   */
  word_count: number;
}

/**
 * `video.transcription.failed` (video): Transcription of a video failed for good.
 */
export interface VideoTranscriptionFailed {
  /**
   * What went wrong.
   */
  error: string;
  /**
   * When it failed.
   * Checked by the gateway: format: "date-time".
   */
  failed_at: string;
  /**
   * The transcription job's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  job_id: string;
  /**
   * The video's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  video_id: string;
}

/**
 * `video.ai.generated` (video): AI-generated content for a video is ready.
 */
export interface VideoAiGenerated {
  /**
   * The generated text.
   */
  content: string;
  /**
   * When it was generated.
   * Checked by the gateway: format: "date-time".
   */
  generated_at: string;
  /**
   * What was generated.
   */
  kind: GeneratedKind;
  /**
   * The model that produced it.
   */
  model: string;
  /**
   * The video's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  video_id: string;
}

/**
 * `dam.asset.uploaded` (dam): A file was uploaded to the asset library.
 */
export interface DamAssetUploaded {
  /**
   * The asset's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  asset_id: string;
  /**
   * MIME type.
   */
  content_type: string;
  /**
   * File name as uploaded.
   */
  file_name: string;
  /**
   * File size in bytes.
   * Checked by the gateway: format: "uint64", minimum: 0.
   */
  size_bytes: number;
  /**
   * Where the file is stored.
   * Checked by the gateway: format: "uri", pattern: "^https?://[^\\s]+$", maxLength: 2048.
   */
  storage_url: string;
  /**
   * When it was uploaded.
   * Checked by the gateway: format: "date-time".
   */
  uploaded_at: string;
  /**
   * Who uploaded it.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  uploaded_by: string;
}

/**
 * `dam.gdrive.sync.requested` (dam): A sync of a Google Drive folder into the asset library was requested.
 */
export interface DamGdriveSyncRequested {
  /**
   * Only files changed since then, or everything when absent.
   * Checked by the gateway: format: "date-time".
   */
  changed_since?: string | null;
  /**
   * The Drive folder to sync.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  folder_id: string;
  /**
   * When it was requested.
   * Checked by the gateway: format: "date-time".
   */
  requested_at: string;
  /**
   * Who asked for it.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  requested_by: string;
  /**
   * The sync's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  sync_id: string;
}

/**
 * `dam.rights.expiry.check` (dam): The usage rights of one asset are to be checked for expiry.
 */
export interface DamRightsExpiryCheck {
  /**
   * The asset's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  asset_id: string;
  /**
   * The last day the asset may be used.
   * Checked by the gateway: format: "date".
   */
  rights_expire_on: string;
  /**
   * Warn this many days before expiry.
   * Checked by the gateway: format: "uint32", minimum: 0.
   */
  warn_days_before: number;
}

/**
 * `dam.export.requested` (dam): An export of assets was requested.
 */
export interface DamExportRequested {
  /**
   * The assets to export.
   */
  asset_ids: string[];
  /**
   * The export's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  export_id: string;
  /**
   * The format.
   */
  format: ExportFormat;
  /**
   * When it was requested.
   * Checked by the gateway: format: "date-time".
   */
  requested_at: string;
  /**
   * Who asked for it.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  requested_by: string;
}

/**
 * `dam.export.completed` (dam): An export of assets is ready to download.
 */
export interface DamExportCompleted {
  /**
   * When it finished.
   * Checked by the gateway: format: "date-time".
   */
  completed_at: string;
  /**
   * Where to download it.
   * Checked by the gateway: format: "uri", pattern: "^https?://[^\\s]+$", maxLength: 2048.
   */
  download_url: string;
  /**
   * Until when the download link works.
   * Checked by the gateway: format: "date-time".
   */
  expires_at: string;
  /**
   * The export's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  export_id: string;
  /**
   * Number of files exported.
   * Checked by the gateway: format: "uint32", minimum: 0.
   */
  file_count: number;
}

/**
 * `fraud.detection.created` (fraud): Fraud screening reached a decision on an order.
 */
export interface FraudDetectionCreated {
  /**
   * The order's amount.
   */
  amount: Money;
  /**
   * The decision.
   */
  decision: Decision;
  /**
   * When it was decided.
   * Checked by the gateway: format: "date-time".
   */
  detected_at: string;
  /**
   * The detection's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  detection_id: string;
  /**
   * The screened order.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  order_id: string;
  /**
   * Risk score, 0 (safe) to 1000 (certain fraud).
   * Checked by the gateway: format: "uint16", minimum: 0, maximum: 65535.
   */
  score: number;
  /**
   * The signals behind the score.
   */
  signals: Signal[];
}

/**
 * `fraud.explanation.requested` (fraud): An AI explanation of a fraud decision was requested.
 */
export interface FraudExplanationRequested {
  /**
   * The decision being explained.
   */
  decision: Decision;
  /**
   * The detection to explain.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  detection_id: string;
  /**
   * HIGH for BLOCK decisions, NORMAL otherwise.
   */
  priority: Priority;
  /**
   * When it was requested.
   * Checked by the gateway: format: "date-time".
   */
  requested_at: string;
}

/**
 * `fraud.explanation.completed` (fraud): An AI explanation of a fraud decision is ready.
 */
export interface FraudExplanationCompleted {
  /**
   * When it was written.
   * Checked by the gateway: format: "date-time".
   */
  completed_at: string;
  /**
   * The explained detection.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  detection_id: string;
  /**
   * The explanation, in plain language.
   */
  explanation: string;
  /**
   * The model that wrote it.
   */
  model: string;
}

/**
 * `email.alert.requested` (notifications): An email alert is to be sent.
 */
export interface EmailAlertRequested {
  /**
   * The alert's id (also the idempotency key of the send).
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  alert_id: string;
  /**
   * When it was requested.
   * Checked by the gateway: format: "date-time".
   */
  requested_at: string;
  /**
   * The template.
   */
  template: EmailTemplate;
  /**
   * Recipients.
   */
  to: string[];
  /**
   * Values the template fills in, by name.
   */
  variables: {
    [key: string]: string;
  };
}

/**
 * `webhook.delivery.requested` (notifications): A webhook is to be delivered to a subscriber's endpoint.
 */
export interface WebhookDeliveryRequested {
  /**
   * The exact body to POST (JSON text), signed as is.
   */
  body: string;
  /**
   * The delivery's id (sent as the idempotency header).
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  delivery_id: string;
  /**
   * The webhook's event name, e.g. `order.created`.
   */
  event_name: string;
  /**
   * When it was requested.
   * Checked by the gateway: format: "date-time".
   */
  requested_at: string;
  /**
   * The subscription it belongs to (selects the signing secret).
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  subscription_id: string;
  /**
   * The endpoint.
   * Checked by the gateway: format: "uri", pattern: "^https?://[^\\s]+$", maxLength: 2048.
   */
  url: string;
}

/**
 * `webhook.delivery.failed` (notifications): A webhook delivery failed for good.
 */
export interface WebhookDeliveryFailed {
  /**
   * Attempts made.
   * Checked by the gateway: format: "uint32", minimum: 0.
   */
  attempts: number;
  /**
   * The delivery's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  delivery_id: string;
  /**
   * What went wrong on the last attempt.
   */
  error: string;
  /**
   * When it was given up.
   * Checked by the gateway: format: "date-time".
   */
  failed_at: string;
  /**
   * The last HTTP status, if a response came back.
   * Checked by the gateway: format: "uint16", minimum: 0, maximum: 65535.
   */
  last_status?: number | null;
  /**
   * The subscription it belongs to.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  subscription_id: string;
  /**
   * The endpoint.
   * Checked by the gateway: format: "uri", pattern: "^https?://[^\\s]+$", maxLength: 2048.
   */
  url: string;
}

/**
 * `message.sent` (messaging): A user sent a message (to be screened by content moderation).
 */
export interface MessageSent {
  /**
   * The conversation it belongs to.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  conversation_id: string;
  /**
   * The message's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  message_id: string;
  /**
   * The recipients.
   */
  recipient_ids: string[];
  /**
   * The sender.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  sender_id: string;
  /**
   * When it was sent.
   * Checked by the gateway: format: "date-time".
   */
  sent_at: string;
  /**
   * The text.
   */
  text: string;
}

/**
 * `message.flagged` (messaging): Content moderation flagged a message.
 */
export interface MessageFlagged {
  /**
   * The categories it was flagged for.
   */
  categories: ModerationCategory[];
  /**
   * Confidence, 0 to 1000.
   * Checked by the gateway: format: "uint16", minimum: 0, maximum: 65535.
   */
  confidence: number;
  /**
   * When it was flagged.
   * Checked by the gateway: format: "date-time".
   */
  flagged_at: string;
  /**
   * Whether it was hidden from the recipients.
   */
  hidden: boolean;
  /**
   * The message's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  message_id: string;
}

/**
 * `analysis.requested` (analysis): An analysis of a repository was requested.
 */
export interface AnalysisRequested {
  /**
   * The analysis job's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  analysis_id: string;
  /**
   * The commit to analyse.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  commit_sha: string;
  /**
   * The repository to analyse.
   * Checked by the gateway: format: "uri", pattern: "^https?://[^\\s]+$", maxLength: 2048.
   */
  repository_url: string;
  /**
   * When it was requested.
   * Checked by the gateway: format: "date-time".
   */
  requested_at: string;
  /**
   * Who asked for it.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  requested_by: string;
}

/**
 * `analysis.completed` (analysis): An analysis finished.
 */
export interface AnalysisCompleted {
  /**
   * The analysis job's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  analysis_id: string;
  /**
   * The analysed commit.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  commit_sha: string;
  /**
   * When it finished.
   * Checked by the gateway: format: "date-time".
   */
  completed_at: string;
  /**
   * How long it ran, in milliseconds.
   * Checked by the gateway: format: "uint64", minimum: 0.
   */
  duration_ms: number;
  /**
   * Files analysed.
   * Checked by the gateway: format: "uint32", minimum: 0.
   */
  files_analysed: number;
  /**
   * What it found.
   */
  findings: Finding[];
}

/**
 * `analysis.failed` (analysis): An analysis failed for good.
 */
export interface AnalysisFailed {
  /**
   * The analysis job's id.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  analysis_id: string;
  /**
   * Attempts made.
   * Checked by the gateway: format: "uint32", minimum: 0.
   */
  attempts: number;
  /**
   * What went wrong.
   */
  error: string;
  /**
   * When it was given up.
   * Checked by the gateway: format: "date-time".
   */
  failed_at: string;
}

/**
 * `daily.metrics` (scheduled): Time to compute the day's metrics for a tenant.
 */
export interface DailyMetrics {
  /**
   * The schedule that fired.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  schedule: string;
  /**
   * The tick's scheduled time (not the time it was published).
   * Checked by the gateway: format: "date-time".
   */
  scheduled_at: string;
  /**
   * The time zone the schedule's cron expression is read in.
   * Checked by the gateway: pattern: "^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", maxLength: 64.
   */
  timezone: string;
}

/**
 * `hourly.sync` (scheduled): Time for the hourly sync with external systems.
 */
export interface HourlySync {
  /**
   * The schedule that fired.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  schedule: string;
  /**
   * The tick's scheduled time (not the time it was published).
   * Checked by the gateway: format: "date-time".
   */
  scheduled_at: string;
  /**
   * The time zone the schedule's cron expression is read in.
   * Checked by the gateway: pattern: "^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", maxLength: 64.
   */
  timezone: string;
}

/**
 * `weekly.digest` (scheduled): Time to send the weekly digest.
 */
export interface WeeklyDigest {
  /**
   * The schedule that fired.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  schedule: string;
  /**
   * The tick's scheduled time (not the time it was published).
   * Checked by the gateway: format: "date-time".
   */
  scheduled_at: string;
  /**
   * The time zone the schedule's cron expression is read in.
   * Checked by the gateway: pattern: "^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", maxLength: 64.
   */
  timezone: string;
}

/**
 * `video.sync.recovery` (scheduled): Time to retry video processing that stalled.
 */
export interface VideoSyncRecovery {
  /**
   * The schedule that fired.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  schedule: string;
  /**
   * The tick's scheduled time (not the time it was published).
   * Checked by the gateway: format: "date-time".
   */
  scheduled_at: string;
  /**
   * The time zone the schedule's cron expression is read in.
   * Checked by the gateway: pattern: "^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", maxLength: 64.
   */
  timezone: string;
}

/**
 * `dam.rights.expiry.daily` (scheduled): Time for the daily check of asset usage rights.
 */
export interface DamRightsExpiryDaily {
  /**
   * The schedule that fired.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  schedule: string;
  /**
   * The tick's scheduled time (not the time it was published).
   * Checked by the gateway: format: "date-time".
   */
  scheduled_at: string;
  /**
   * The time zone the schedule's cron expression is read in.
   * Checked by the gateway: pattern: "^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", maxLength: 64.
   */
  timezone: string;
}

/**
 * `daily.report` (scheduled): Time to write the daily report for a tenant.
 */
export interface DailyReport {
  /**
   * The schedule that fired.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  schedule: string;
  /**
   * The tick's scheduled time (not the time it was published).
   * Checked by the gateway: format: "date-time".
   */
  scheduled_at: string;
  /**
   * The time zone the schedule's cron expression is read in.
   * Checked by the gateway: pattern: "^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", maxLength: 64.
   */
  timezone: string;
}

/**
 * `weekly.cleanup` (scheduled): Time to remove data older than the retention.
 */
export interface WeeklyCleanup {
  /**
   * The schedule that fired.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  schedule: string;
  /**
   * The tick's scheduled time (not the time it was published).
   * Checked by the gateway: format: "date-time".
   */
  scheduled_at: string;
  /**
   * The time zone the schedule's cron expression is read in.
   * Checked by the gateway: pattern: "^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", maxLength: 64.
   */
  timezone: string;
}

/**
 * `health.check` (scheduled): Time to check the health of the dependencies.
 */
export interface HealthCheck {
  /**
   * The schedule that fired.
   * Checked by the gateway: pattern: "^[^\\s\\x00-\\x1f\\x7f]+$", minLength: 1, maxLength: 128.
   */
  schedule: string;
  /**
   * The tick's scheduled time (not the time it was published).
   * Checked by the gateway: format: "date-time".
   */
  scheduled_at: string;
  /**
   * The time zone the schedule's cron expression is read in.
   * Checked by the gateway: pattern: "^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", maxLength: 64.
   */
  timezone: string;
}

/**
 * `sla.breached` (platform): A handler run went over its expected duration. Published once per attempt, while the run
 * is still going.
 */
export interface SlaBreached {
  /**
   * The attempt that is running late.
   * Checked by the gateway: format: "uint32", minimum: 0.
   */
  attempt: number;
  /**
   * When the breach was seen.
   * Checked by the gateway: format: "date-time".
   */
  detected_at: string;
  /**
   * How long the run had been going when the breach was seen, in milliseconds.
   * Checked by the gateway: format: "uint64", minimum: 0.
   */
  elapsed_ms: number;
  /**
   * The event being handled.
   */
  event_id: string;
  /**
   * Its type.
   */
  event_type: string;
  /**
   * The expected duration, in milliseconds.
   * Checked by the gateway: format: "uint64", minimum: 0.
   */
  expected_ms: number;
  /**
   * The handler group.
   */
  group: string;
}

/** The data of each event type, by type name. */
export interface EventMap {
  "order.created": OrderCreated;
  "order.fulfilled": OrderFulfilled;
  "order.cancelled": OrderCancelled;
  "order.refunded": OrderRefunded;
  "customer.created": CustomerCreated;
  "review.submitted": ReviewSubmitted;
  "review.reminder.scheduled": ReviewReminderScheduled;
  "creator.applied": CreatorApplied;
  "creator.approved": CreatorApproved;
  "creator.rejected": CreatorRejected;
  "payout.requested": PayoutRequested;
  "payout.completed": PayoutCompleted;
  "touchpoint.recorded": TouchpointRecorded;
  "conversion.attributed": ConversionAttributed;
  "video.upload.completed": VideoUploadCompleted;
  "video.transcription.started": VideoTranscriptionStarted;
  "video.transcription.completed": VideoTranscriptionCompleted;
  "video.transcription.failed": VideoTranscriptionFailed;
  "video.ai.generated": VideoAiGenerated;
  "dam.asset.uploaded": DamAssetUploaded;
  "dam.gdrive.sync.requested": DamGdriveSyncRequested;
  "dam.rights.expiry.check": DamRightsExpiryCheck;
  "dam.export.requested": DamExportRequested;
  "dam.export.completed": DamExportCompleted;
  "fraud.detection.created": FraudDetectionCreated;
  "fraud.explanation.requested": FraudExplanationRequested;
  "fraud.explanation.completed": FraudExplanationCompleted;
  "email.alert.requested": EmailAlertRequested;
  "webhook.delivery.requested": WebhookDeliveryRequested;
  "webhook.delivery.failed": WebhookDeliveryFailed;
  "message.sent": MessageSent;
  "message.flagged": MessageFlagged;
  "analysis.requested": AnalysisRequested;
  "analysis.completed": AnalysisCompleted;
  "analysis.failed": AnalysisFailed;
  "daily.metrics": DailyMetrics;
  "hourly.sync": HourlySync;
  "weekly.digest": WeeklyDigest;
  "video.sync.recovery": VideoSyncRecovery;
  "dam.rights.expiry.daily": DamRightsExpiryDaily;
  "daily.report": DailyReport;
  "weekly.cleanup": WeeklyCleanup;
  "health.check": HealthCheck;
  "sla.breached": SlaBreached;
}

/** Every event type of the catalog. */
export type EventType = keyof EventMap;

/**
 * A CloudEvents 1.0 event of type `T` in JSON structured mode, as the gateway takes it
 * (`Content-Type: application/cloudevents+json`, or an array of them as
 * `application/cloudevents-batch+json`) and as it is stored on `events.<tenantid>.<type>`.
 */
export interface CloudEvent<T extends EventType = EventType> {
  specversion: "1.0";
  /** Unique per tenant: a retry with the same id inside the duplicate window is stored once. */
  id: string;
  /** The publishing app. */
  source: string;
  type: T;
  /** When it happened (RFC 3339). */
  time?: string;
  datacontenttype?: "application/json";
  /** The tenant. Through the gateway it may be left out: the API key names it. */
  tenantid?: string;
  /** W3C trace context. */
  traceparent?: string;
  /** Id shared by every event of one causal chain. */
  correlationid?: string;
  /** Id of the event that caused this one. */
  causationid?: string;
  /** Gateway only: deliver this long after it is stored, e.g. "10m", "3d". */
  delay?: string;
  /** Gateway only: deliver at this time (RFC 3339). */
  deliverat?: string;
  data: EventMap[T];
}
