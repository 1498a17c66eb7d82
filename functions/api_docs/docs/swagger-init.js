// Swagger UI over this API's own document, with Authorize and try-it-out. Nothing is prefilled
// into Idempotency-Key: every try sends what the person typed, or no key at all.
"use strict";
window.ui = window.SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  docExpansion: "list",
  filter: true,
  layout: "BaseLayout",
  presets: [window.SwaggerUIBundle.presets.apis],
  persistAuthorization: false,
  displayRequestDuration: true,
  validatorUrl: null,
  tryItOutEnabled: false,
});
