/**
 * A minimal Prometheus registry (text exposition format 0.0.4): counters and gauges with labels, and
 * histograms with fixed buckets. Enough for the DS's own numbers without a dependency.
 */
type Labels = Record<string, string>;

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  return keys.map((k) => `${k}="${labels[k]!.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`).join(",");
}

function series(name: string, key: string, value: number): string {
  return `${name}${key ? `{${key}}` : ""} ${Number.isFinite(value) ? value : 0}`;
}

interface Metric {
  render(): string[];
}

export class Counter implements Metric {
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    private readonly help: string,
  ) {}

  inc(labels: Labels = {}, by = 1): void {
    const k = labelKey(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }

  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }

  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    if (this.values.size === 0) out.push(series(this.name, "", 0));
    for (const [k, v] of this.values) out.push(series(this.name, k, v));
    return out;
  }
}

export class Gauge implements Metric {
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly collect?: () => number,
  ) {}

  set(value: number, labels: Labels = {}): void {
    this.values.set(labelKey(labels), value);
  }

  add(by: number, labels: Labels = {}): void {
    const k = labelKey(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }

  get(labels: Labels = {}): number {
    return this.collect && Object.keys(labels).length === 0 ? this.collect() : (this.values.get(labelKey(labels)) ?? 0);
  }

  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    if (this.collect) out.push(series(this.name, "", this.collect()));
    else if (this.values.size === 0) out.push(series(this.name, "", 0));
    for (const [k, v] of this.values) out.push(series(this.name, k, v));
    return out;
  }
}

export class Histogram implements Metric {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly buckets: readonly number[],
  ) {
    this.counts = buckets.map(() => 0);
  }

  observe(value: number): void {
    this.sum += value;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) this.counts[i]!++;
  }

  get observations(): number {
    return this.count;
  }

  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.buckets.forEach((b, i) => out.push(series(`${this.name}_bucket`, `le="${b}"`, this.counts[i]!)));
    out.push(series(`${this.name}_bucket`, `le="+Inf"`, this.count), series(`${this.name}_sum`, "", this.sum), series(`${this.name}_count`, "", this.count));
    return out;
  }
}

export class Registry {
  private readonly metrics: Metric[] = [];

  register<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }

  render(): string {
    return this.metrics.flatMap((m) => m.render()).join("\n") + "\n";
  }
}

/** The DS's metrics, one set per server instance. */
export class DsMetrics {
  readonly registry = new Registry();
  readonly connections: Gauge;
  readonly groups: Gauge;
  readonly replays: Gauge;
  readonly commitsAccepted = this.registry.register(new Counter("conclave_ds_commits_accepted_total", "Commits accepted and sequenced"));
  readonly commitsRejected = this.registry.register(new Counter("conclave_ds_commits_rejected_total", "Commits refused, by reason"));
  readonly messages = this.registry.register(new Counter("conclave_ds_messages_total", "Messages sequenced, by kind"));
  readonly refusals = this.registry.register(new Counter("conclave_ds_refusals_total", "Requests refused, by event and code"));
  readonly keyPackagesUploaded = this.registry.register(new Counter("conclave_ds_key_packages_uploaded_total", "KeyPackages stored"));
  readonly keyPackagesClaimed = this.registry.register(new Counter("conclave_ds_key_packages_claimed_total", "KeyPackages handed out, by kind"));
  readonly externalProposals = this.registry.register(new Counter("conclave_ds_external_proposals_total", "Remove proposals the DS sent as external sender, by cause"));
  readonly memberReports = this.registry.register(new Counter("conclave_ds_member_reports_total", "Sequenced commits a member reported it could not process"));
  readonly backlogDisconnects = this.registry.register(
    new Counter("conclave_ds_backlog_disconnects_total", "Connections dropped because more than maxQueuedBytes waited to be written to them"),
  );
  readonly fanoutSeconds = this.registry.register(
    new Histogram("conclave_ds_fanout_seconds", "From receiving a message to handing it to Socket.IO for every subscriber", [
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
    ]),
  );

  constructor(collect: { connections: () => number; groups: () => number; replays: () => number }) {
    this.connections = this.registry.register(new Gauge("conclave_ds_connections", "Authenticated Socket.IO connections", collect.connections));
    this.groups = this.registry.register(new Gauge("conclave_ds_groups", "Open groups (calls) served by this node", collect.groups));
    this.replays = this.registry.register(new Gauge("conclave_ds_replays", "Long log replays (group:subscribe) paced by their connection, running now", collect.replays));
  }
}
