// A standard EventSource client (npm `eventsource`, the WHATWG implementation) on hostwatch's
// /events, run by tests/tests/interop.rs as `node eventsource.mjs URL SECONDS`.
//
// Prints one JSON line per event with an id ({"id", "type"}), per open ({"open": true}) and per
// error ({"error": readyState}); stops after SECONDS (a bound, so it never outlives the test)
// or when the connection is closed for good (readyState CLOSED, which is what a proxy's 502
// does to EventSource), printing {"closed": true}.
import { EventSource } from 'eventsource';

const [url, seconds] = process.argv.slice(2);
const TYPES = ['sample', 'agent_connected', 'agent_disconnected', 'status', 'notification',
  'alert', 'lagged', 'shutdown', 'resync'];
const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');

const source = new EventSource(url);
source.onopen = () => print({ open: true });
source.onerror = () => {
  print({ error: source.readyState });
  if (source.readyState === EventSource.CLOSED) {
    print({ closed: true });
    process.exit(0);
  }
};
// Notices carry no id; their lastEventId is the one before, kept by EventSource.
const NOTICES = ['lagged', 'shutdown', 'resync'];
for (const type of TYPES) {
  source.addEventListener(type, (event) => {
    if (NOTICES.includes(type) || !event.lastEventId) print({ type });
    else print({ id: Number(event.lastEventId), type });
  });
}
setTimeout(() => { source.close(); process.exit(0); }, Number(seconds) * 1000);
