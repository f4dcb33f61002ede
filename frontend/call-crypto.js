// Loaded only by the lobby of an encrypted room (a chunk of its own, call-host.js imports it
// dynamically): the Rust crypto's WebAssembly, fetched from GuestGate's own static files.
import { initAsync } from "@matrix-org/matrix-sdk-crypto-wasm";

/** Fetch and compile the crypto's WebAssembly; matrix-js-sdk's initRustCrypto then uses it. */
export async function loadCryptoWasm(url) {
  await initAsync(url);
}
