/* Verstak Sync Server: progressive enhancement only; every page works without it. */
"use strict";
