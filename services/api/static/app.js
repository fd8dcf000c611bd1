// The CourseCast dashboard: sign in with an API token, follow the jobs live, play the published lectures.
//
// Plain ES module, no build step. Everything goes through the /v1/ API with the token in the
// Authorization header; the live progress too: the SSE stream is read with fetch() (EventSource
// cannot send headers), so the token never appears in a URL, and a refused stream answers with the
// API's problem document, shown as is. Text from the API is only ever set as textContent.
import Hls from "./vendor/hls.min.mjs";

const TOKEN_KEY = "coursecast.token";
const TERMINAL = new Set(["completed", "failed", "canceled"]);
// The api holds at most api_max_streams_per_user (8 by default) streams per user: stay well under it,
// so a CLI or a second tab of the same user can still follow a job. Jobs past it wait their turn.
const MAX_STREAMS = 4;
// The list is read again this often: it finds new jobs and restarts a stream that was cut.
const REFRESH_MS = 10_000;

const $ = (id) => document.getElementById(id);
const jobs = new Map(); // job_id → the latest JobPublic seen
const published = new Map(); // job_id → its course's catalogue entry (GET /v1/courses)
const streams = new Map(); // job_id → AbortController of its live stream
let refreshTimer = null;
let coursesShown = "";
let hls = null;

/** An RFC 9457 problem document the API answered with. */
class Problem extends Error {
  constructor(status, doc) {
    const title = doc.title || `HTTP ${status}`;
    super(doc.detail ? `${title}: ${doc.detail}` : title);
    this.status = status;
    this.doc = doc;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function api(path, init = {}) {
  const headers = { Accept: "application/json", ...init.headers, Authorization: `Bearer ${token()}` };
  const response = await fetch(path, { ...init, headers });
  if (!response.ok) {
    let doc = {};
    try {
      doc = await response.json();
    } catch {
      // not a problem document (a proxy's error page): the status says enough
    }
    throw new Problem(response.status, doc);
  }
  return response;
}

function notify(message) {
  const notice = $("notice");
  notice.textContent = message || "";
  notice.hidden = !message;
}

// --- Server-Sent Events over fetch ---------------------------------------------------------------

/** Each event ({event, data}) of a text/event-stream body, as the HTML standard parses them. */
export async function* serverSentEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      // A trailing "\r" may be the first half of "\r\n": keep it for the next chunk.
      const held = buffer.endsWith("\r") ? "\r" : "";
      const blocks = buffer.slice(0, buffer.length - held.length).replace(/\r\n?/g, "\n").split("\n\n");
      buffer = blocks.pop() + held;
      for (const block of blocks) {
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue; // a comment (keep-alive)
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "event") event = value;
          else if (field === "data") data.push(value);
        }
        if (data.length) yield { event, data: data.join("\n") };
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// --- jobs ----------------------------------------------------------------------------------------

async function refresh() {
  const page = await (await api("/v1/jobs?limit=50")).json();
  for (const job of page.items) remember(job);
  // The catalogue names each published lecture (its title); the jobs carry the renditions.
  const catalogue = await (await api("/v1/courses?limit=100")).json();
  for (const course of catalogue.items) published.set(course.job_id, course);
  render();
  followLiveJobs();
}

function remember(job) {
  const known = jobs.get(job.job_id);
  if (!known || Date.parse(known.updated_at) <= Date.parse(job.updated_at)) jobs.set(job.job_id, job);
}

function followLiveJobs() {
  const live = [...jobs.values()]
    .filter((job) => !TERMINAL.has(job.status) && !streams.has(job.job_id))
    .sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at));
  for (const job of live) {
    if (streams.size >= MAX_STREAMS) return;
    follow(job.job_id);
  }
}

async function follow(jobId) {
  const controller = new AbortController();
  streams.set(jobId, controller);
  let ended = false;
  try {
    const response = await api(`/v1/jobs/${jobId}/stream`, {
      signal: controller.signal,
      headers: { Accept: "text/event-stream" },
    });
    for await (const message of serverSentEvents(response.body)) {
      if (message.event === "job") {
        remember(JSON.parse(message.data));
        render();
      } else if (message.event === "revoked") {
        signOut("The API token was revoked: sign in with a new one.");
        return;
      } else if (message.event === "end") {
        break;
      }
    }
    remember(await (await api(`/v1/jobs/${jobId}`)).json());
    render();
    ended = true;
  } catch (error) {
    if (controller.signal.aborted) return;
    if (error instanceof Problem && error.status === 401) {
      signOut(error.message);
      return;
    }
    // A cut connection is followed again by the next refresh; a refusal is shown.
    if (error instanceof Problem) notify(error.message);
  } finally {
    if (streams.get(jobId) === controller) streams.delete(jobId);
  }
  // A slot is free: the next live job's turn. After a failure, the next refresh tries again instead.
  if (ended) followLiveJobs();
}

function render() {
  const body = $("jobs").tBodies[0];
  const ordered = [...jobs.values()].sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
  $("no-jobs").hidden = ordered.length > 0;
  for (const [index, job] of ordered.entries()) {
    let row = document.getElementById(`job-${job.job_id}`);
    if (!row) {
      row = body.insertRow();
      row.id = `job-${job.job_id}`;
      row.dataset.jobId = job.job_id;
      for (const name of ["course", "curriculum", "status", "progress", "step", "created"]) {
        row.insertCell().className = name;
      }
      row.cells[3].append(document.createElement("progress"), document.createElement("span"));
      row.cells[3].firstChild.max = 100;
    }
    if (body.rows[index] !== row) body.insertBefore(row, body.rows[index] || null);
    row.dataset.status = job.status;
    row.cells[0].textContent = job.course_name;
    row.cells[1].textContent = job.curriculum;
    row.cells[2].textContent = job.status;
    row.cells[2].className = `status status-${job.status}`;
    const percent = Number(job.progress_percent) || 0;
    row.cells[3].firstChild.value = percent;
    row.cells[3].lastChild.textContent = ` ${percent.toFixed(0)}%`;
    row.cells[4].textContent = job.error_message
      ? `${job.error_type}: ${job.error_message}`
      : job.current_step || "";
    row.cells[5].textContent = new Date(job.created_at).toLocaleString();
  }
  renderCourses();
}

// --- courses -------------------------------------------------------------------------------------

/** The published courses: the completed jobs' outputs (renditions, playlists), each lecture titled
 * from the catalogue (GET /v1/courses). Shape: {key, name, curriculum, lectures: [...]}. */
function coursesFromJobs() {
  return [...jobs.values()]
    .filter((job) => job.status === "completed" && job.outputs && Array.isArray(job.outputs.videos))
    .sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at))
    .map((job) => ({
      key: job.job_id,
      name: job.course_name,
      curriculum: job.curriculum,
      lectures: job.outputs.videos.map((video, position) => ({
        title: lectureTitle(job, video.video_index ?? position),
        durationS: Number(video.duration_s) || 0,
        masterUrl: video.master_playlist_url,
        thumbnailUrl: video.thumbnail_url,
        renditions: video.renditions || [],
      })),
    }));
}

/** A lecture's title from the catalogue entry of the job's course, else its number. */
function lectureTitle(job, index) {
  const course = published.get(job.job_id);
  const lecture = course && course.lectures.find((item) => item.index === index);
  return lecture ? lecture.title : `Lecture ${index + 1}`;
}

function renderCourses() {
  const courses = coursesFromJobs();
  const shown = courses.map((course) => course.key).join(",");
  $("no-courses").hidden = courses.length > 0;
  if (shown === coursesShown) return; // unchanged: keep the images and buttons as they are
  coursesShown = shown;
  const list = $("courses");
  list.replaceChildren();
  for (const course of courses) {
    const card = document.createElement("article");
    card.className = "course";
    card.dataset.courseKey = course.key;
    const title = document.createElement("h3");
    title.textContent = `${course.name} · ${course.curriculum}`;
    const lectures = document.createElement("ul");
    lectures.className = "lectures";
    for (const lecture of course.lectures) {
      const item = document.createElement("li");
      const image = document.createElement("img");
      image.alt = "";
      if (lecture.thumbnailUrl) image.src = lecture.thumbnailUrl;
      const label = document.createElement("span");
      label.textContent = `${lecture.title} (${formatDuration(lecture.durationS)})`;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "play";
      button.textContent = "Play";
      button.addEventListener("click", () => openPlayer(course, lecture));
      item.append(image, label, button);
      lectures.append(item);
    }
    card.append(title, lectures);
    list.append(card);
  }
}

function formatDuration(seconds) {
  const whole = Math.round(seconds);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

// --- player --------------------------------------------------------------------------------------

function openPlayer(course, lecture) {
  $("player-section").hidden = false;
  $("player-title").textContent = `${course.name} — ${lecture.title}`;
  const select = $("rendition");
  const chosen = select.value;
  select.replaceChildren(new Option("Auto (adaptive)", "auto"));
  for (const rendition of lecture.renditions) {
    const kbps = Math.round(rendition.bandwidth / 1000);
    select.append(
      new Option(`${rendition.name} · ${rendition.width}×${rendition.height} · ${kbps} kb/s`, rendition.height),
    );
  }
  if ([...select.options].some((option) => option.value === chosen)) select.value = chosen;
  select.onchange = () => chooseLevel(select.value);
  load(lecture.masterUrl, select.value);
}

function levelIndex(choice) {
  if (!hls || choice === "auto") return -1;
  return hls.levels.findIndex((level) => level.height === Number(choice));
}

function chooseLevel(choice) {
  if (hls) hls.currentLevel = levelIndex(choice);
}

function load(masterUrl, choice) {
  const video = $("video");
  const state = $("player-state");
  if (hls) hls.destroy();
  hls = null;
  state.textContent = "loading…";
  state.dataset.level = "";
  state.dataset.height = "";
  if (!Hls.isSupported()) {
    // Safari and iOS play HLS natively.
    video.src = masterUrl;
    video.play().catch((error) => notify(`cannot play: ${error.message}`));
    return;
  }
  // No worker: the strict CSP allows no blob: scripts, and the segments are small.
  hls = new Hls({ enableWorker: false, autoStartLoad: false });
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    const index = levelIndex(choice);
    if (index >= 0) {
      // A chosen rendition from the first segment on: ABR off, only its playlist and segments load.
      hls.startLevel = index;
      hls.loadLevel = index;
    }
    hls.startLoad();
    video.play().catch((error) => notify(`cannot play: ${error.message}`));
  });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_, data) => {
    const level = hls.levels[data.level];
    state.dataset.level = String(data.level);
    state.dataset.height = String(level.height);
    state.textContent = `playing ${level.height}p (${Math.round(level.bitrate / 1000)} kb/s)`;
  });
  hls.on(Hls.Events.ERROR, (_, data) => {
    if (data.fatal) notify(`playback failed: ${data.details}`);
  });
  hls.loadSource(masterUrl);
  hls.attachMedia(video);
}

// --- sign in and out -----------------------------------------------------------------------------

function showSignedIn(signedIn) {
  $("sign-in").hidden = signedIn;
  $("signed-in").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
}

async function signIn(candidate) {
  sessionStorage.setItem(TOKEN_KEY, candidate);
  try {
    await refresh();
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignedIn(false);
    notify(error.message);
    return;
  }
  notify("");
  showSignedIn(true);
  clearInterval(refreshTimer);
  refreshTimer = setInterval(() => refresh().catch(onRefreshError), REFRESH_MS);
}

function onRefreshError(error) {
  if (error instanceof Problem && error.status === 401) signOut(error.message);
  else notify(error.message);
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(refreshTimer);
  for (const controller of streams.values()) controller.abort();
  streams.clear();
  jobs.clear();
  coursesShown = "";
  if (hls) hls.destroy();
  hls = null;
  $("jobs").tBodies[0].replaceChildren();
  $("courses").replaceChildren();
  $("player-section").hidden = true;
  showSignedIn(false);
  notify(message || "");
}

$("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const field = $("token");
  const candidate = field.value.trim();
  field.value = "";
  if (candidate) signIn(candidate);
});
$("sign-out").addEventListener("click", () => signOut(""));
if (token()) signIn(token());
