/**
 * The part of the `radius` package (node-radius 1.1, plain JavaScript with no types of its own)
 * that filter/radius.ts uses, as its README documents it.
 */
declare module 'radius' {
  type AttributeValue = string | number | Buffer | Date;
  export interface DecodedPacket {
    code: string;
    identifier: number;
    length: number;
    /** By dictionary name; a repeated attribute's value is an array. */
    attributes: Record<string, AttributeValue | AttributeValue[] | undefined>;
    raw_attributes: Array<[number, Buffer]>;
  }
  /** Thrown by decode when the Request Authenticator or Message-Authenticator does not check out with the secret. */
  export class InvalidSecretError extends Error {
    decoded: DecodedPacket;
  }
  /** Parses a packet; for requests, verifies its authenticator with the secret (throws InvalidSecretError, or Error when malformed). */
  export function decode(args: { packet: Buffer; secret: string }): DecodedPacket;
  export function encode(args: { code: string; secret: string; identifier?: number; attributes?: Array<[string | number, unknown]> | Record<string, unknown>; add_message_authenticator?: boolean }): Buffer;
  /** The response to a decoded request: its identifier, Proxy-State and the Response Authenticator. */
  export function encode_response(args: { packet: DecodedPacket; code: string; secret: string; attributes?: Array<[string | number, unknown]> }): Buffer;
  export function verify_response(args: { request: Buffer; response: Buffer; secret: string }): boolean;
  const radius: {
    decode: typeof decode;
    encode: typeof encode;
    encode_response: typeof encode_response;
    verify_response: typeof verify_response;
    InvalidSecretError: typeof InvalidSecretError;
  };
  export default radius;
}
