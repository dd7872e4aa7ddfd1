// Reads {"secret": "whsec_…", "headers": {name: value}, "body": "…"} on
// stdin and verifies the request with the standardwebhooks package (the
// Standard Webhooks reference library for JavaScript), timestamp tolerance
// included. Prints the verified payload's type and exits 0, or prints the
// error and exits 1.
import { Webhook } from "standardwebhooks";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { secret, headers, body } = JSON.parse(input);
try {
  const payload = new Webhook(secret).verify(body, headers);
  console.log("verified " + payload.type);
} catch (err) {
  console.error("not verified: " + err.message);
  process.exit(1);
}
