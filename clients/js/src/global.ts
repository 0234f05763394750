// The script build served at /client.js: `RtgateClient` (and the rest of
// the package as `Rtgate`) on the page's global object, for pages that load
// it with a plain <script> tag.

import * as Rtgate from "./index.js";

Object.assign(globalThis, { Rtgate, RtgateClient: Rtgate.RtgateClient });
