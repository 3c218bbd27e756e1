// A push service on 127.0.0.1 for the end-to-end test of notifications, standing in for the
// browser vendor's (unreachable offline): it takes the relay's RFC 8030 POSTs and keeps them.
// The subscription it serves is the test's own: a P-256 key pair and auth secret made here, so
// the test decrypts each body (RFC 8291 aes128gcm, with the http_ece package) into the notice
// the machine sent, and hands that plaintext to the browser's service worker.

import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { createECDH, randomBytes, type ECDH } from "node:crypto";
import ece from "http_ece";
import { waitFor } from "./harness";

export interface Posted {
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** When it arrived (Date.now()). */
  at: number;
}

export class PushService {
  readonly posts: Posted[] = [];
  /** The subscription's keys, as a browser would hold them. */
  readonly keys: ECDH = createECDH("prime256v1");
  readonly auth: Buffer = randomBytes(16);
  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {
    this.keys.generateKeys();
  }

  static async start(): Promise<PushService> {
    const posts: Posted[] = [];
    const server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        posts.push({ path: request.url ?? "", headers: request.headers, body: Buffer.concat(chunks), at: Date.now() });
        // RFC 8030 §5: 201 Created, with the message's location.
        response.writeHead(201, { Location: `/message/${posts.length}` });
        response.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    const port = typeof address === "object" && address ? address.port : 0;
    const service = new PushService(server, port);
    (service as { posts: Posted[] }).posts = posts;
    return service;
  }

  get origin(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The subscription endpoint the stubbed browser hands the app. */
  get endpoint(): string {
    return `${this.origin}/push/device-1`;
  }

  /** The subscription's public key (uncompressed P-256) and auth secret, base64url. */
  subscription(): { endpoint: string; p256dh: string; auth: string } {
    return { endpoint: this.endpoint, p256dh: this.keys.getPublicKey().toString("base64url"), auth: this.auth.toString("base64url") };
  }

  /** The plaintext of a POST. */
  decrypt(post: Posted): string {
    return ece.decrypt(post.body, { version: "aes128gcm", privateKey: this.keys, authSecret: this.auth }).toString("utf8");
  }

  /** The first notice after the first `after` POSTs that `matches`, decrypted. */
  async notice(what: string, after: number, matches: (notice: any) => boolean): Promise<{ text: string; notice: any; post: Posted }> {
    try {
      return await waitFor(what, () => {
        for (const post of this.posts.slice(after)) {
          const text = this.decrypt(post);
          const notice = JSON.parse(text);
          if (matches(notice)) return { text, notice, post };
        }
        return undefined;
      });
    } catch (error) {
      const seen = this.posts.slice(after).map((post) => this.decrypt(post));
      throw new Error(`${(error as Error).message}; pushed meanwhile: ${seen.length ? seen.join("\n") : "nothing"}`);
    }
  }

  async close(): Promise<void> {
    await new Promise((resolve) => this.server.close(resolve));
  }
}
