// The little of http_ece (RFC 8188/8291 encrypted content coding) the tests use.
declare module "http_ece" {
  import type { ECDH } from "node:crypto";
  interface Params {
    version: "aes128gcm";
    privateKey?: ECDH;
    authSecret?: Buffer;
  }
  const ece: { decrypt(buffer: Buffer, params: Params): Buffer; encrypt(buffer: Buffer, params: Params & { dh?: Buffer }): Buffer };
  export default ece;
}
