import { ready, requireKey } from "./app.js";

await requireKey();
ready();
