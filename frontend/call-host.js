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
class CallDriver extends WidgetDriver {
  constructor(client, roomId, transports, onRefused) {
    super();
    this.client = client;
    this.roomId = roomId;
    this.transports = transports;
    this.onRefused = onRefused;
    this.grantable = grantableCapabilities(roomId, client.getUserId(), client.getDeviceId());
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
      answer = await this.client.sendStateEvent(room, eventType, content, stateKey);
    } else if (eventType === "m.room.redaction") {
      answer = await this.client.redactEvent(room, content.redacts);
    } else {
      answer = await this.client.sendEvent(room, eventType, content);
    }
    return { roomId: room, eventId: answer.event_id };
  }

  async sendDelayedEvent(delay, eventType, content, stateKey = null, roomId = null) {
    const room = this.ownRoom(roomId);
    const answer =
      stateKey !== null && stateKey !== undefined
        ? await this.client._unstable_sendDelayedStateEvent(
            room,
            { delay },
            eventType,
            content,
            stateKey,
          )
        : await this.client._unstable_sendDelayedEvent(room, { delay }, null, eventType, content);
    return { roomId: room, delayId: answer.delay_id };
  }

  async cancelScheduledDelayedEvent(delayId) {
    await this.client._unstable_updateDelayedEvent(delayId, UpdateDelayedEventAction.Cancel);
  }

  async restartScheduledDelayedEvent(delayId) {
    await this.client._unstable_updateDelayedEvent(delayId, UpdateDelayedEventAction.Restart);
  }

  async sendScheduledDelayedEvent(delayId) {
    await this.client._unstable_updateDelayedEvent(delayId, UpdateDelayedEventAction.Send);
  }

  async sendToDevice(eventType, encrypted, contentMap) {
    if (encrypted) {
      // No crypto in this host: the lobby refuses encrypted rooms before the call starts.
      throw new Error("this host cannot encrypt to-device messages");
    }
    // Only to the people in this call's room: the widget may not message anyone else.
    const members = await this.client.getJoinedRoomMembers(this.roomId);
    const recipients = Object.keys(contentMap);
    const strangers = recipients.filter((userId) => !(userId in members.joined));
    if (strangers.length) {
      throw new Error("to-device messages may only go to members of the call's room");
    }
    const map = new Map(
      recipients.map((userId) => [userId, new Map(Object.entries(contentMap[userId]))]),
    );
    await this.client.sendToDevice(eventType, map);
  }

  async readRoomState(roomId, eventType, stateKey) {
    if (roomId !== this.roomId) return [];
    const state = await this.client.roomState(roomId);
    return state.filter(
      (event) =>
        event.type === eventType && (stateKey === undefined || event.state_key === stateKey),
    );
  }

  async readStickyEvents() {
    return [];
  }

  askOpenID(observer) {
    this.client.getOpenIdToken().then(
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

/** One call: the guest's client, the iframe and the widget API between them. */
class Call {
  constructor({ session, container, callUrl, transports, lang, onClosed, onRefused }) {
    this.session = session;
    this.container = container;
    this.callUrl = callUrl;
    this.transports = transports;
    this.lang = lang;
    this.onClosed = onClosed;
    this.onRefused = onRefused;
    this.listeners = [];
  }

  widgetUrl() {
    const s = this.session;
    const parentUrl = window.location.origin + window.location.pathname;
    const params = new URLSearchParams({
      widgetId: WIDGET_ID,
      parentUrl,
      roomId: s.roomId,
      userId: s.userId,
      deviceId: s.deviceId,
      baseUrl: s.homeserverUrl,
      lang: this.lang,
      theme: "light",
      confineToRoom: "true",
      header: "none",
      // Straight into the call: the guest already chose to join by asking to (no `intent`:
      // it would make the first joiner ping the whole room, CALL-LAB §2).
      skipLobby: "true",
    });
    return new URL(this.callUrl + "#?" + params.toString(), window.location.href).href;
  }

  async start() {
    const s = this.session;
    this.client = createClient({
      baseUrl: s.homeserverUrl,
      accessToken: s.accessToken,
      userId: s.userId,
      deviceId: s.deviceId,
    });
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
      creatorUserId: s.userId,
      type: "m.custom",
      url: iframe.src,
      waitForIframeLoad: false,
    });
    const driver = new CallDriver(this.client, s.roomId, this.transports, this.onRefused);
    this.api = new ClientWidgetApi(widget, iframe, driver);
    this.acknowledge("io.element.join", {});
    this.acknowledge("io.element.device_mute", {});
    this.acknowledge("set_always_on_screen", { success: true });
    this.acknowledge("io.element.close", {}, () => this.close());
    this.api.on("ready", () => this.api.setViewedRoomId(s.roomId));
    this.feed();
    await this.client.startClient({ initialSyncLimit: 1, lazyLoadMembers: true });
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
    const roomId = this.session.roomId;
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

/** The lobby's side: start the call when the guest is let in, end it when they are not. */
function host(root) {
  const container = root.querySelector("#call-frame-box");
  const left = root.querySelector("#call-left");
  const encrypted = root.querySelector("#call-encrypted");
  const failed = root.querySelector("#call-failed");
  const transports = JSON.parse(root.dataset.transports || "[]");
  let call = null;
  let session = null;
  let hungUp = false;

  function show(which) {
    for (const element of [container, left, encrypted, failed]) element.hidden = element !== which;
    root.dataset.callState = which ? which.id : "none";
  }

  async function start() {
    if (call || !session) return;
    const thisSession = session;
    try {
      if (await roomIsEncrypted(thisSession)) {
        show(encrypted);
        return;
      }
    } catch (error) {
      console.warn("GuestGate: could not read the room's encryption", error);
      show(failed);
      return;
    }
    if (session !== thisSession || call) return; // the state changed while we asked
    hungUp = false;
    call = new Call({
      session: thisSession,
      container,
      callUrl: root.dataset.callUrl,
      transports,
      lang: document.documentElement.lang || "en",
      onClosed: () => {
        call = null;
        hungUp = true;
        show(left);
      },
      onRefused: (refused) => {
        root.dataset.refusedCapabilities = refused.join(" ");
      },
    });
    show(container);
    container.scrollIntoView({ block: "nearest" });
    call.start().catch((error) => {
      console.warn("GuestGate: the call did not start", error);
      show(failed);
    });
  }

  function stop() {
    if (call) call.stop();
    call = null;
    show(null);
  }

  function follow(state) {
    const joined = state.status === "joined" && state.session;
    if (!joined) {
      session = null;
      stop();
      return;
    }
    const changed = !session || session.accessToken !== state.session.accessToken;
    session = state.session;
    if (changed && call) stop();
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
