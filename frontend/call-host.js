// The lobby as Element Call's widget host (DESIGN "The call", CALL-LAB).
//
// Element Call's embedded build logs in to nothing: it runs in an iframe and asks its host,
// over the widget API, to do the Matrix work of a call. The lobby already holds the let-in
// guest's session, so this script is that host: a ClientWidgetApi (matrix-widget-api) with a
// driver over matrix-js-sdk. It grants only what a call in this one room needs (CALL-LAB §3)
// and refuses everything else. The lobby's own script (static/guestgate/lobby.js) follows the
// join request and tells this one about each new state with a "guestgate:lobby-state" event.
//
// In an encrypted room Element Call sends each participant's media key to the others as
// to-device messages it asks the host to encrypt (CALL-LAB §8): the host then runs
// matrix-js-sdk's Rust crypto for the guest's device (kept in IndexedDB across reloads),
// encrypts what the widget sends and gives it only what arrived encrypted. The crypto's code
// and WebAssembly are loaded only in such a room (call-crypto.js, a chunk of its own).
import {
  ClientWidgetApi,
  EventDirection,
  MatrixCapabilities,
  OpenIDRequestState,
  Widget,
  WidgetDriver,
  WidgetEventCapability,
} from "matrix-widget-api";
import { ClientEvent, MatrixError, RoomEvent, RoomStateEvent, createClient } from "matrix-js-sdk";

const CALL_MEMBER = "org.matrix.msc3401.call.member";
const ENCRYPTION_KEYS = "io.element.call.encryption_keys";
const WIDGET_ID = "guestgate-call";
// The guest's choice to see Element Call's own lobby (camera and microphone) before the call.
const DEVICES_FIRST = "guestgate.call.devicesFirst";
// How long an encrypted send waits for a recipient's device keys to arrive by sync.
const DEVICE_KEYS_WAIT_MS = 15000;

/** What the host did with encryption, for the lobby's tests and anyone debugging a call:
 * to-device messages it encrypted, keys it gave the widget that arrived encrypted, messages it
 * dropped for arriving in clear, and the crypto's state (off, loading, on, failed). */
const counters = { encryptedSent: 0, keysFedEncrypted: 0, clearDropped: 0, crypto: "off" };
window.guestgateCallHost = { counters };

/** The crypto could not start here (no IndexedDB, the WebAssembly blocked or not loaded). */
class CryptoUnavailable extends Error {}

let cryptoWasm = null;

/** Fetch and compile the crypto's WebAssembly, once; while the guest waits, when the page
 * already knows that the room encrypts. */
function loadCrypto() {
  if (!cryptoWasm) {
    counters.crypto = "loading";
    // GUESTGATE_CRYPTO_WASM: set by frontend/build.mjs (esbuild define), the hashed file name
    const url = new URL(GUESTGATE_CRYPTO_WASM, import.meta.url);
    cryptoWasm = import("./call-crypto.js").then((module) => module.loadCryptoWasm(url));
    cryptoWasm.catch((error) => {
      counters.crypto = "failed";
      console.warn("GuestGate: the call's encryption could not load", error);
    });
  }
  return cryptoWasm;
}

/** The guest's client with the Rust crypto for their device, its store in IndexedDB under a
 * name of its own for this account and device: a reload finds the same keys, and the device
 * never uploads its one-time keys twice. */
async function startCrypto(client, session) {
  try {
    await loadCrypto();
    await client.initRustCrypto({
      useIndexedDB: true,
      cryptoDatabasePrefix: `guestgate-call:${session.userId}:${session.deviceId}`,
    });
  } catch (error) {
    counters.crypto = "failed";
    throw new CryptoUnavailable(String(error));
  }
  counters.crypto = "on";
  return client.getCrypto();
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Room events Element Call 0.26 sends and receives in the call room (CALL-LAB §3).
const ROOM_EVENTS = [
  "org.matrix.msc4075.call.notify",
  "org.matrix.rageshake_request",
  "io.element.call.encryption_keys",
  "m.reaction",
  "m.room.redaction",
  "io.element.call.reaction",
  "org.matrix.msc4310.rtc.decline",
  "org.matrix.msc4143.rtc.member",
];
const SEND_ONLY_ROOM_EVENTS = ["org.matrix.msc4075.rtc.notification"];
const READ_STATE = [
  "m.room.create",
  "m.room.name",
  "m.room.member",
  "m.room.encryption",
  CALL_MEMBER,
];
const TO_DEVICE = [
  "m.call.invite",
  "m.call.candidates",
  "m.call.answer",
  "m.call.hangup",
  "m.call.reject",
  "m.call.select_answer",
  "m.call.negotiate",
  "m.call.sdp_stream_metadata_changed",
  "org.matrix.call.sdp_stream_metadata_changed",
  "m.call.replaces",
  "io.element.call.encryption_keys",
];

/** Every capability this guest's call may have: this room, this user and device only. */
export function grantableCapabilities(roomId, userId, deviceId) {
  const send = EventDirection.Send;
  const receive = EventDirection.Receive;
  const raw = (capability) => capability.raw;
  return new Set([
    MatrixCapabilities.AlwaysOnScreen,
    MatrixCapabilities.MSC4039DownloadFile,
    MatrixCapabilities.MSC4157SendDelayedEvent,
    MatrixCapabilities.MSC4157UpdateDelayedEvent,
    MatrixCapabilities.MSC4407SendStickyEvent,
    MatrixCapabilities.MSC4407ReceiveStickyEvent,
    MatrixCapabilities.MSC4515RtcTransports,
    `org.matrix.msc2762.timeline:${roomId}`,
    ...ROOM_EVENTS.map((type) => raw(WidgetEventCapability.forRoomEvent(send, type))),
    ...ROOM_EVENTS.map((type) => raw(WidgetEventCapability.forRoomEvent(receive, type))),
    ...SEND_ONLY_ROOM_EVENTS.map((type) => raw(WidgetEventCapability.forRoomEvent(send, type))),
    ...[userId, `_${userId}_${deviceId}_m.call`, `${userId}_${deviceId}_m.call`].map((key) =>
      raw(WidgetEventCapability.forStateEvent(send, CALL_MEMBER, key)),
    ),
    ...READ_STATE.map((type) => raw(WidgetEventCapability.forStateEvent(receive, type))),
    ...TO_DEVICE.map((type) => raw(WidgetEventCapability.forToDeviceEvent(send, type))),
    ...TO_DEVICE.map((type) => raw(WidgetEventCapability.forToDeviceEvent(receive, type))),
  ]);
}

/** The driver: what the widget may ask of the guest's Matrix session, confined to one room. */
//
// While a preloaded call waits for "let in" the driver has no client (the lobby has no access
// token yet, and the guest is not in the room): reads of the room's state wait for it, and
// anything else is refused. Element Call 0.26 loads the call once, when its first read of the
// state is answered, and gives up if the guest is not a member then ("Room not found"): a
// read that waits is what keeps it loaded and ready until the guest is let in.
class CallDriver extends WidgetDriver {
  constructor(ids, transports, onRefused) {
    super();
    this.client = null;
    this.admitted = new Promise((resolve) => {
      this.admit = resolve;
    });
    this.roomId = ids.roomId;
    this.transports = transports;
    this.onRefused = onRefused;
    this.grantable = grantableCapabilities(ids.roomId, ids.userId, ids.deviceId);
  }

  /** The guest is let in: the widget may act with their client (and its ``crypto`` in an
   * encrypted room) from now on. */
  attach(client, crypto) {
    this.client = client;
    this.crypto = crypto;
    this.admit(client);
  }

  /** The guest's client, once they are let in. */
  get joinedClient() {
    if (!this.client) throw new Error("the guest is not in the room yet");
    return this.client;
  }

  async validateCapabilities(requested) {
    const granted = new Set([...requested].filter((c) => this.grantable.has(c)));
    const refused = [...requested].filter((c) => !granted.has(c));
    if (refused.length) this.onRefused(refused);
    return granted;
  }

  ownRoom(roomId) {
    if (roomId && roomId !== this.roomId) {
      throw new Error("this call may only act in its own room");
    }
    return this.roomId;
  }

  async sendEvent(eventType, content, stateKey = null, roomId = null) {
    const room = this.ownRoom(roomId);
    let answer;
    if (stateKey !== null && stateKey !== undefined) {
      answer = await this.joinedClient.sendStateEvent(room, eventType, content, stateKey);
    } else if (eventType === "m.room.redaction") {
      answer = await this.joinedClient.redactEvent(room, content.redacts);
    } else {
      answer = await this.joinedClient.sendEvent(room, eventType, content);
    }
    return { roomId: room, eventId: answer.event_id };
  }

  async sendDelayedEvent(delay, eventType, content, stateKey = null, roomId = null) {
    const room = this.ownRoom(roomId);
    const answer =
      stateKey !== null && stateKey !== undefined
        ? await this.joinedClient._unstable_sendDelayedStateEvent(
            room,
            { delay },
            eventType,
            content,
            stateKey,
          )
        : await this.joinedClient._unstable_sendDelayedEvent(room, { delay }, null, eventType, content);
    return { roomId: room, delayId: answer.delay_id };
  }

  async cancelScheduledDelayedEvent(delayId) {
    await this.joinedClient._unstable_cancelScheduledDelayedEvent(delayId);
  }

  async restartScheduledDelayedEvent(delayId) {
    await this.joinedClient._unstable_restartScheduledDelayedEvent(delayId);
  }

  async sendScheduledDelayedEvent(delayId) {
    await this.joinedClient._unstable_sendScheduledDelayedEvent(delayId);
  }

  async sendToDevice(eventType, encrypted, contentMap) {
    if (!encrypted && eventType === ENCRYPTION_KEYS) {
      throw new Error("media keys are only sent encrypted");
    }
    if (encrypted && !this.crypto) {
      throw new Error("this call's room does not encrypt: nothing to encrypt with");
    }
    // Only to the people in this call's room: the widget may not message anyone else.
    const members = await this.joinedClient.getJoinedRoomMembers(this.roomId);
    const recipients = Object.keys(contentMap);
    const strangers = recipients.filter((userId) => !(userId in members.joined));
    if (strangers.length) {
      throw new Error("to-device messages may only go to members of the call's room");
    }
    if (encrypted) {
      await this.sendEncrypted(eventType, contentMap);
      return;
    }
    const map = new Map(
      recipients.map((userId) => [userId, new Map(Object.entries(contentMap[userId]))]),
    );
    await this.joinedClient.sendToDevice(eventType, map);
  }

  /** Encrypt for each recipient device (Olm) and queue them: matrix-js-sdk sends them as
   * ``m.room.encrypted`` and retries what fails. The same content goes in one batch. */
  async sendEncrypted(eventType, contentMap) {
    const byContent = new Map();
    for (const [userId, devices] of Object.entries(contentMap)) {
      for (const [deviceId, content] of Object.entries(devices)) {
        for (const device of await this.knownDevices(userId, deviceId)) {
          const key = JSON.stringify(content);
          if (!byContent.has(key)) byContent.set(key, { content, devices: [] });
          byContent.get(key).devices.push(device);
        }
      }
    }
    for (const { content, devices } of byContent.values()) {
      const batch = await this.crypto.encryptToDeviceMessages(eventType, devices, content);
      await this.joinedClient.queueToDevice(batch);
      counters.encryptedSent += batch.batch.length;
    }
  }

  /** The devices of ``userId`` that ``deviceId`` names (``*``: all of them) whose keys the
   * crypto knows. A device that joined a moment ago may not be known yet: its keys come with
   * the next sync, so this waits for them a while before giving up on that device. */
  async knownDevices(userId, deviceId) {
    const deadline = Date.now() + DEVICE_KEYS_WAIT_MS;
    for (let attempt = 0; ; attempt += 1) {
      const known = (await this.crypto.getUserDeviceInfo([userId])).get(userId) ?? new Map();
      if (deviceId === "*" && known.size) return [...known.keys()].map((id) => ({ userId, deviceId: id }));
      if (known.has(deviceId)) return [{ userId, deviceId }];
      if (Date.now() >= deadline) {
        console.warn("GuestGate: no keys for a device of the call, not sent to it", userId, deviceId);
        return [];
      }
      await pause(Math.min(1000, 100 * 2 ** attempt));
    }
  }

  async readRoomState(roomId, eventType, stateKey) {
    if (roomId !== this.roomId) return [];
    const client = await this.admitted;
    const state = await client.roomState(roomId);
    return state.filter(
      (event) =>
        event.type === eventType && (stateKey === undefined || event.state_key === stateKey),
    );
  }

  async readStickyEvents() {
    return [];
  }

  askOpenID(observer) {
    Promise.resolve()
      .then(() => this.joinedClient.getOpenIdToken())
      .then(
      (token) => observer.update({ state: OpenIDRequestState.Allowed, token }),
      () => observer.update({ state: OpenIDRequestState.Blocked }),
    );
  }

  async getRtcTransports() {
    return { rtc_transports: this.transports };
  }

  getKnownRooms() {
    return [this.roomId];
  }

  processError(error) {
    if (error instanceof MatrixError) {
      return {
        matrix_api_error: {
          http_status: error.httpStatus ?? 500,
          http_headers: {},
          url: error.url ?? "",
          response: { errcode: error.errcode ?? "M_UNKNOWN", error: error.data?.error ?? "" },
        },
      };
    }
    return undefined;
  }
}

/** One call: the guest's client, the iframe and the widget API between them.
 *
 * ``ids`` names the guest's account and device and the room (no secret). A call made with
 * ``preload`` loads Element Call while the guest waits: it negotiates with the host and waits
 * (CALL-LAB §4); ``join(session)`` then gives the driver the guest's client, which answers
 * the widget's waiting reads of the room's state, and sends ``io.element.join``. A call made
 * without it starts at ``join`` and goes straight into the call (``skipLobby``). With
 * ``devicesFirst`` (the guest's choice) Element Call shows its own lobby instead, where the
 * guest picks camera and microphone and presses its Join. */
class Call {
  constructor({ ids, preload, devicesFirst, container, callUrl, transports, lang, onClosed, onRefused }) {
    this.ids = ids;
    this.preload = preload;
    this.devicesFirst = devicesFirst;
    this.container = container;
    this.callUrl = callUrl;
    this.transports = transports;
    this.lang = lang;
    this.onClosed = onClosed;
    this.onRefused = onRefused;
    this.listeners = [];
    this.client = null;
    this.load();
  }

  /** Whether this call was loaded for this guest's account and device, as they chose it. */
  isFor(ids, devicesFirst) {
    return (
      ids.userId === this.ids.userId &&
      ids.deviceId === this.ids.deviceId &&
      devicesFirst === this.devicesFirst
    );
  }

  widgetUrl() {
    const ids = this.ids;
    const parentUrl = window.location.origin + window.location.pathname;
    const params = new URLSearchParams({
      widgetId: WIDGET_ID,
      parentUrl,
      roomId: ids.roomId,
      userId: ids.userId,
      deviceId: ids.deviceId,
      baseUrl: ids.homeserverUrl,
      lang: this.lang,
      theme: "light",
      confineToRoom: "true",
      header: "none",
    });
    // Straight into the call: the guest already chose to join by asking to (no `intent`: it
    // would make the first joiner ping the whole room, CALL-LAB §2); unless they chose to
    // check their camera and microphone first in Element Call's lobby.
    if (!this.devicesFirst) params.set("skipLobby", "true");
    // Element Call's preload waits, out of sight, for the host's join; its own lobby is for the
    // guest to see: loaded early all the same (its reads of the room wait for "let in").
    if (this.preload && !this.devicesFirst) params.set("preload", "true");
    return new URL(this.callUrl + "#?" + params.toString(), window.location.href).href;
  }

  load() {
    const ids = this.ids;
    const iframe = document.createElement("iframe");
    iframe.id = "call-frame";
    iframe.title = this.container.dataset.frameTitle || "Call";
    iframe.allow = "camera; microphone; display-capture; autoplay; clipboard-write";
    iframe.src = this.widgetUrl();
    // The iframe must be in the document before the widget API attaches to it (CALL-LAB §11).
    this.container.append(iframe);
    this.iframe = iframe;
    const widget = new Widget({
      id: WIDGET_ID,
      creatorUserId: ids.userId,
      type: "m.custom",
      url: iframe.src,
      waitForIframeLoad: false,
    });
    this.driver = new CallDriver(ids, this.transports, this.onRefused);
    this.api = new ClientWidgetApi(widget, iframe, this.driver);
    this.negotiated = new Promise((resolve) => this.api.once("capabilitiesNotified", resolve));
    this.acknowledge("io.element.join", {});
    this.acknowledge("io.element.device_mute", {});
    this.acknowledge("set_always_on_screen", { success: true });
    this.acknowledge("io.element.close", {}, () => this.close());
    this.api.on("ready", () => this.api.setViewedRoomId(ids.roomId));
  }

  /** The guest is let in (their server has the room): the call gets their client, with the
   * crypto when the room ``encrypted`` (`CryptoUnavailable` if it cannot start: the widget
   * then never gets the client, and the guest never joins a call they could not decrypt). */
  async join(session, encrypted) {
    this.client = createClient({
      baseUrl: session.homeserverUrl,
      accessToken: session.accessToken,
      userId: session.userId,
      deviceId: session.deviceId,
    });
    this.encrypted = encrypted;
    const crypto = encrypted ? await startCrypto(this.client, session) : null;
    if (this.stopped) return;
    this.driver.attach(this.client, crypto);
    this.feed();
    // The crypto tracks the devices of the room's members: all of them, not lazily loaded.
    const started = this.client.startClient({ initialSyncLimit: 1, lazyLoadMembers: !encrypted });
    if (this.preload && !this.devicesFirst) {
      // Element Call now reads the room's state, loads the call and joins it on this.
      await this.negotiated;
      await this.api.transport.send("io.element.join", {});
    }
    await started;
  }

  acknowledge(action, reply, then) {
    this.api.on(`action:${action}`, (event) => {
      event.preventDefault();
      this.api.transport.reply(event.detail, reply);
      if (then) then();
    });
  }

  /** What happens in the room reaches the widget: timeline, state and to-device. */
  feed() {
    const roomId = this.ids.roomId;
    this.on(RoomEvent.Timeline, (event, room, toStartOfTimeline, removed, data) => {
      if (room?.roomId !== roomId || toStartOfTimeline || removed || !data?.liveEvent) return;
      this.api.feedEvent(event.getEffectiveEvent()).catch(() => {});
    });
    this.on(RoomStateEvent.Events, (event) => {
      if (event.getRoomId() !== roomId) return;
      this.api.feedStateUpdate(event.getEffectiveEvent()).catch(() => {});
    });
    this.on(ClientEvent.ReceivedToDeviceMessage, (received) => this.feedToDevice(received));
  }

  /** A to-device message for the widget. In an encrypted room only what arrived encrypted
   * (from the sender it claims): a copy in clear could come from anyone. Media keys never
   * go to the widget in clear. */
  feedToDevice({ message, encryptionInfo }) {
    const encrypted = Boolean(encryptionInfo) && encryptionInfo.sender === message.sender;
    if (!encrypted && (this.encrypted || message.type === ENCRYPTION_KEYS)) {
      counters.clearDropped += 1;
      console.warn("GuestGate: dropped a to-device message that arrived in clear", message.type);
      return;
    }
    this.api
      .feedToDevice(message, encrypted)
      .then(() => {
        if (encrypted && message.type === ENCRYPTION_KEYS) counters.keysFedEncrypted += 1;
      })
      .catch(() => {});
  }

  on(name, listener) {
    this.client.on(name, listener);
    this.listeners.push([name, listener]);
  }

  close() {
    this.stop();
    this.onClosed();
  }

  stop() {
    this.stopped = true;
    for (const [name, listener] of this.listeners) this.client.off(name, listener);
    this.listeners = [];
    this.api?.stop();
    this.api?.removeAllListeners();
    this.iframe?.remove();
    this.client?.stopClient();
  }
}

/** Whether the room encrypts (then the call needs the crypto).
 *
 * Also waits until the guest homeserver has the room: the lobby hears "joined" from main,
 * and the guest's own server may finish the remote join a moment later ("not in room"). */
async function roomIsEncrypted(session) {
  const client = createClient({
    baseUrl: session.homeserverUrl,
    accessToken: session.accessToken,
    userId: session.userId,
  });
  for (let attempt = 0; ; attempt += 1) {
    try {
      await client.getStateEvent(session.roomId, "m.room.encryption", "");
      return true;
    } catch (error) {
      if (!(error instanceof MatrixError)) throw error;
      if (error.errcode === "M_NOT_FOUND") return false;
      if (error.errcode !== "M_FORBIDDEN" || attempt >= 40) throw error;
    }
    await pause(Math.min(1000, 50 * 2 ** attempt));
  }
}

/** The guest's choice to check camera and microphone first, kept in this browser. */
function devicesFirstChoice() {
  const box = document.getElementById("call-devices-first");
  let stored = null;
  try {
    stored = window.localStorage.getItem(DEVICES_FIRST);
  } catch {
    // no storage (a private window's policy): the choice lasts for this page only
  }
  if (box) box.checked = stored === "true";
  return {
    get on() {
      return Boolean(box?.checked);
    },
    onChange(listener) {
      box?.addEventListener("change", () => {
        try {
          window.localStorage.setItem(DEVICES_FIRST, String(box.checked));
        } catch {
          // kept for this page only
        }
        listener();
      });
    },
  };
}

/** The lobby's side: load the call while the guest waits, join it when they are let in, end
 * it when they are not. */
function host(root) {
  const container = root.querySelector("#call-frame-box");
  const left = root.querySelector("#call-left");
  const encrypted = root.querySelector("#call-encrypted");
  const failed = root.querySelector("#call-failed");
  const otherDoor = document.getElementById("call-link-box");
  const choice = document.getElementById("call-choice");
  const transports = JSON.parse(root.dataset.transports || "[]");
  const devicesFirst = devicesFirstChoice();
  // Preloading can be switched off for a comparison (bench/call_view.py): ?preload=off.
  const preloading = new URLSearchParams(window.location.search).get("preload") !== "off";
  let call = null; // the call, loaded (preloaded while waiting) or joined
  let joined = false; // whether ``call`` has the guest's session
  let session = null;
  let waitingIds = null; // who the preloaded call is for, while the guest waits
  let hungUp = false;

  function show(which) {
    for (const element of [container, left, encrypted, failed]) element.hidden = element !== which;
    root.dataset.callState = which ? which.id : "none";
    // Element Call elsewhere is a second door: offered only when the call here cannot be.
    if (otherDoor) otherDoor.hidden = !(which === encrypted || which === failed);
    offerChoice();
  }

  /** "Check camera and microphone first" while it can matter: waiting, or let in and not in
   * the call view (before a rejoin). */
  function offerChoice() {
    if (choice) choice.hidden = !(waitingIds || session) || !container.hidden;
  }

  function newCall(ids, preload) {
    const thisCall = new Call({
      ids,
      preload,
      devicesFirst: devicesFirst.on,
      container,
      callUrl: root.dataset.callUrl,
      transports,
      lang: document.documentElement.lang || "en",
      onClosed: () => {
        if (call !== thisCall) return;
        call = null;
        joined = false;
        hungUp = true;
        show(left);
      },
      onRefused: (refused) => {
        root.dataset.refusedCapabilities = refused.join(" ");
      },
    });
    return thisCall;
  }

  /** While the guest waits: Element Call loads, out of sight, for their account and device;
   * in a room the page knows to encrypt, the crypto's WebAssembly too. */
  function preload(ids) {
    waitingIds = ids;
    offerChoice();
    if (root.dataset.encrypted === "true") loadCrypto().catch(() => {});
    if (!preloading || (call && call.isFor(ids, devicesFirst.on))) return;
    stop();
    const thisCall = newCall(ids, true);
    call = thisCall;
    root.dataset.callPreloaded = "true";
    thisCall.negotiated.then(() => {
      if (call === thisCall) root.dataset.callNegotiated = "true";
    });
  }

  async function start() {
    if (joined || !session) return;
    const thisSession = session;
    let encrypts;
    try {
      encrypts = await roomIsEncrypted(thisSession);
    } catch (error) {
      console.warn("GuestGate: could not read the room's encryption", error);
      stop();
      show(failed);
      return;
    }
    if (session !== thisSession || joined) return; // the state changed while we asked
    hungUp = false;
    if (!call || !call.isFor(thisSession, devicesFirst.on) || !call.preload) {
      stop();
      call = newCall(thisSession, false);
    }
    joined = true;
    root.dataset.callPreloaded = String(call.preload);
    root.dataset.callEncrypted = String(encrypts);
    show(container);
    container.scrollIntoView({ block: "nearest" });
    const thisCall = call;
    thisCall.join(thisSession, encrypts).catch((error) => {
      if (call !== thisCall) return;
      console.warn("GuestGate: the call did not start", error);
      stop();
      show(error instanceof CryptoUnavailable ? encrypted : failed);
    });
  }

  function stop() {
    delete root.dataset.callNegotiated;
    if (call) call.stop();
    call = null;
    joined = false;
    show(null);
  }

  function follow(state) {
    const isJoined = state.status === "joined" && state.session;
    if (!isJoined) {
      session = null;
      waitingIds = null;
      offerChoice();
      if (state.call_preload && !hungUp) preload(state.call_preload);
      else stop();
      return;
    }
    waitingIds = null;
    offerChoice();
    const changed = !session || session.accessToken !== state.session.accessToken;
    session = state.session;
    if (changed && joined) stop();
    if (!hungUp) start();
  }

  // A change of mind while waiting: the preloaded call is loaded again the chosen way.
  devicesFirst.onChange(() => {
    if (!joined && waitingIds) preload(waitingIds);
  });
  root.querySelector("#call-rejoin").addEventListener("click", () => {
    hungUp = false;
    start();
  });
  document.addEventListener("guestgate:lobby-state", (event) => follow(event.detail));
  // The lobby's latest state: lobby.js may have heard of changes before this module ran.
  const initial = document.getElementById("lobby-initial-state");
  const latest = window.guestgateLobbyState ?? (initial && JSON.parse(initial.textContent));
  if (latest) follow(latest);
}

const root = document.getElementById("call");
if (root && root.dataset.mode === "embedded") host(root);
