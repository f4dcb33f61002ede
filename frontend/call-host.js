// The lobby as Element Call's widget host (DESIGN "The call", CALL-LAB).
//
// Element Call's embedded build logs in to nothing: it runs in an iframe and asks its host,
// over the widget API, to do the Matrix work of a call. The lobby already holds the let-in
// guest's session, so this script is that host: a ClientWidgetApi (matrix-widget-api) with a
// driver over matrix-js-sdk. It grants only what a call in this one room needs (CALL-LAB §3)
// and refuses everything else. The lobby's own script (static/guestgate/lobby.js) follows the
// join request and tells this one about each new state with a "guestgate:lobby-state" event.
import {
  ClientWidgetApi,
  EventDirection,
  MatrixCapabilities,
  OpenIDRequestState,
  Widget,
  WidgetDriver,
  WidgetEventCapability,
} from "matrix-widget-api";
import {
  ClientEvent,
  MatrixError,
  RoomEvent,
  RoomStateEvent,
  UpdateDelayedEventAction,
  createClient,
} from "matrix-js-sdk";

const CALL_MEMBER = "org.matrix.msc3401.call.member";
const WIDGET_ID = "guestgate-call";

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

  /** The guest is let in: the widget may act with their client from now on. */
  attach(client) {
    this.client = client;
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
    await this.joinedClient._unstable_updateDelayedEvent(delayId, UpdateDelayedEventAction.Cancel);
  }

  async restartScheduledDelayedEvent(delayId) {
    await this.joinedClient._unstable_updateDelayedEvent(delayId, UpdateDelayedEventAction.Restart);
  }

  async sendScheduledDelayedEvent(delayId) {
    await this.joinedClient._unstable_updateDelayedEvent(delayId, UpdateDelayedEventAction.Send);
  }

  async sendToDevice(eventType, encrypted, contentMap) {
    if (encrypted) {
      // No crypto in this host: the lobby refuses encrypted rooms before the call starts.
      throw new Error("this host cannot encrypt to-device messages");
    }
    // Only to the people in this call's room: the widget may not message anyone else.
    const members = await this.joinedClient.getJoinedRoomMembers(this.roomId);
    const recipients = Object.keys(contentMap);
    const strangers = recipients.filter((userId) => !(userId in members.joined));
    if (strangers.length) {
      throw new Error("to-device messages may only go to members of the call's room");
    }
    const map = new Map(
      recipients.map((userId) => [userId, new Map(Object.entries(contentMap[userId]))]),
    );
    await this.joinedClient.sendToDevice(eventType, map);
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
 * without it starts at ``join`` and goes straight into the call (``skipLobby``). */
class Call {
  constructor({ ids, preload, container, callUrl, transports, lang, onClosed, onRefused }) {
    this.ids = ids;
    this.preload = preload;
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

  /** Whether this call was loaded for this guest's account and device. */
  isFor(ids) {
    return ids.userId === this.ids.userId && ids.deviceId === this.ids.deviceId;
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
      // Straight into the call: the guest already chose to join by asking to (no `intent`:
      // it would make the first joiner ping the whole room, CALL-LAB §2).
      skipLobby: "true",
    });
    if (this.preload) params.set("preload", "true");
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

  /** The guest is let in (their server has the room): the call gets their client. */
  async join(session) {
    this.client = createClient({
      baseUrl: session.homeserverUrl,
      accessToken: session.accessToken,
      userId: session.userId,
      deviceId: session.deviceId,
    });
    this.driver.attach(this.client);
    this.feed();
    const started = this.client.startClient({ initialSyncLimit: 1, lazyLoadMembers: true });
    if (this.preload) {
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
    this.on(ClientEvent.ToDeviceEvent, (event) => {
      this.api.feedToDevice(event.getEffectiveEvent(), event.isEncrypted()).catch(() => {});
    });
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
    for (const [name, listener] of this.listeners) this.client.off(name, listener);
    this.listeners = [];
    this.api?.stop();
    this.api?.removeAllListeners();
    this.iframe?.remove();
    this.client?.stopClient();
  }
}

/** Whether the room encrypts: this host has no crypto, and a call in it would be silent.
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
    await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 50 * 2 ** attempt)));
  }
}

/** The lobby's side: load the call while the guest waits, join it when they are let in, end
 * it when they are not. */
function host(root) {
  const container = root.querySelector("#call-frame-box");
  const left = root.querySelector("#call-left");
  const encrypted = root.querySelector("#call-encrypted");
  const failed = root.querySelector("#call-failed");
  const transports = JSON.parse(root.dataset.transports || "[]");
  // Preloading can be switched off for a comparison (bench/call_view.py): ?preload=off.
  const preloading = new URLSearchParams(window.location.search).get("preload") !== "off";
  let call = null; // the call, loaded (preloaded while waiting) or joined
  let joined = false; // whether ``call`` has the guest's session
  let session = null;
  let hungUp = false;

  function show(which) {
    for (const element of [container, left, encrypted, failed]) element.hidden = element !== which;
    root.dataset.callState = which ? which.id : "none";
  }

  function newCall(ids, preload) {
    const thisCall = new Call({
      ids,
      preload,
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

  /** While the guest waits: Element Call loads, out of sight, for their account and device. */
  function preload(ids) {
    if (!preloading || (call && call.isFor(ids))) return;
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
    try {
      if (await roomIsEncrypted(thisSession)) {
        stop();
        show(encrypted);
        return;
      }
    } catch (error) {
      console.warn("GuestGate: could not read the room's encryption", error);
      stop();
      show(failed);
      return;
    }
    if (session !== thisSession || joined) return; // the state changed while we asked
    hungUp = false;
    if (!call || !call.isFor(thisSession) || !call.preload) {
      stop();
      call = newCall(thisSession, false);
    }
    joined = true;
    root.dataset.callPreloaded = String(call.preload);
    show(container);
    container.scrollIntoView({ block: "nearest" });
    const thisCall = call;
    thisCall.join(thisSession).catch((error) => {
      if (call !== thisCall) return;
      console.warn("GuestGate: the call did not start", error);
      stop();
      show(failed);
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
      if (state.call_preload && !hungUp) preload(state.call_preload);
      else stop();
      return;
    }
    const changed = !session || session.accessToken !== state.session.accessToken;
    session = state.session;
    if (changed && joined) stop();
    if (!hungUp) start();
  }

  root.querySelector("#call-rejoin").addEventListener("click", () => {
    hungUp = false;
    start();
  });
  document.addEventListener("guestgate:lobby-state", (event) => follow(event.detail));
  const initial = document.getElementById("lobby-initial-state");
  if (initial) follow(JSON.parse(initial.textContent));
}

const root = document.getElementById("call");
if (root && root.dataset.mode === "embedded") host(root);
