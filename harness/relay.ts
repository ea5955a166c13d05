import net from 'node:net';

/**
 * A TCP relay between the writer and PostgreSQL that a test can cut (refuse new connections and
 * reset live ones, as a dead server would), freeze (hold every byte, as a black-holed network
 * would, so a query's outcome is unknown to the client) and restore.
 */
/** A simple-protocol COMMIT, as node-postgres sends it at the end of a transaction. */
const COMMIT = Buffer.from('Q\u0000\u0000\u0000\u000bCOMMIT\u0000', 'latin1');

export class Relay {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private frozen = false;
  /** Server-to-client bytes only are held: the server goes on with what it was sent. */
  private repliesHeld = false;
  private onCommit: (() => void) | null = null;
  private readonly held: Array<() => void> = [];
  port = 0;

  constructor(private readonly targetPort: number, private readonly targetHost = '127.0.0.1') {}

  async open(): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, this.targetHost);
      const forward = (from: net.Socket, to: net.Socket) =>
        from.on('data', (chunk: Buffer) => {
          if (this.frozen || (this.repliesHeld && from === upstream)) this.held.push(() => to.write(chunk));
          else to.write(chunk);
          if (from === client && this.onCommit && chunk.includes(COMMIT)) {
            const hook = this.onCommit;
            this.onCommit = null;
            this.repliesHeld = true;
            hook();
          }
        });
      forward(client, upstream);
      forward(upstream, client);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => {
          this.sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  freeze(): void {
    this.frozen = true;
  }

  thaw(): void {
    this.frozen = false;
    for (const send of this.held.splice(0)) send();
  }

  /**
   * Resolves once a client's COMMIT has been passed on to the server; from then on every reply
   * is held, so the client never learns that the transaction committed. cut() then resets the
   * connections: the lost-COMMIT-reply case a writer cannot tell from a write that never arrived.
   */
  holdRepliesAfterCommit(): Promise<void> {
    return new Promise((resolve) => (this.onCommit = resolve));
  }

  async cut(): Promise<void> {
    const s = this.server;
    this.server = null;
    this.held.length = 0;
    this.frozen = false;
    this.repliesHeld = false;
    this.onCommit = null;
    for (const sock of this.sockets) sock.resetAndDestroy();
    this.sockets.clear();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  urlFor(databaseUrl: string): string {
    const u = new URL(databaseUrl);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }
}
