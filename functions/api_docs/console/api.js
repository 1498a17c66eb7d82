// The console's one API client: every request to the API, the presigned PUTs and the result
// downloads go through here. Failures become ApiError with the contract's message and key.

export class ApiError extends Error {
  constructor(status, body) {
    const message = (body && body.message) || `HTTP ${status}`;
    super(message);
    this.status = status;
    this.key = (body && body.error) || (status === 401 ? "unauthorized" : "http_" + status);
    this.errorCode = body && body.errorCode;
  }
}

const FINISHED = new Set(["success", "partial_success", "failed", "cancelled"]);

export const isFinished = (status) => FINISHED.has(status);

const readJson = async (response) => {
  const text = await response.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return { message: text.slice(0, 200) };
  }
};

export class Api {
  constructor(base, token = null) {
    this.base = base;
    this.token = token;
  }

  url(path) {
    return new URL(path.replace(/^\//, ""), this.base).toString();
  }

  async request(method, path, { body, headers = {} } = {}) {
    const init = { method, headers: { Accept: "application/json", ...headers } };
    if (this.token) init.headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(this.url(path), init);
    const payload = await readJson(response);
    if (!response.ok || (payload && payload.success === false)) {
      throw new ApiError(response.status, payload);
    }
    return payload;
  }

  async config() {
    return this.request("GET", "console/config.json");
  }

  async createLocalUser(usersUrl, user) {
    return this.request("POST", usersUrl, { body: user });
  }

  async features() {
    return (await this.request("GET", "api/features")).data.features;
  }

  async quota(cursor = null, limit = 10) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set("cursor", cursor);
    return (await this.request("GET", `api/quota?${query}`)).data;
  }

  async presignUploads(files) {
    const specs = files.map((file) => ({
      filename: file.name, content_type: file.type || "application/octet-stream", size: file.size,
    }));
    return (await this.request("POST", "api/uploads", { body: { files: specs } })).data.uploads;
  }

  // XMLHttpRequest, not fetch: it reports upload progress.
  putFile(upload, file, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", upload.upload_url);
      Object.entries(upload.headers || {}).forEach(([name, value]) => {
        if (name.toLowerCase() !== "content-length") xhr.setRequestHeader(name, value);
      });
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          onProgress(1);
          resolve(upload.input_url);
        } else {
          reject(new ApiError(xhr.status, { message: `upload refused (HTTP ${xhr.status})`,
            error: "upload_failed" }));
        }
      };
      xhr.onerror = () => reject(new ApiError(0, { message: "upload failed: network error",
        error: "upload_failed" }));
      xhr.send(file);
    });
  }

  async createBatch(featureId, inputImages, inputData, idempotencyKey) {
    const body = { feature_id: featureId, input_images: inputImages, input_data: inputData };
    const headers = { "Idempotency-Key": idempotencyKey };
    return (await this.request("POST", "api/tasks/batch", { body, headers })).data;
  }

  async task(taskId) {
    return (await this.request("GET", `api/tasks/${encodeURIComponent(taskId)}`)).data;
  }

  async retryFailed(taskId, idempotencyKey) {
    return this.request("POST", `api/tasks/${encodeURIComponent(taskId)}/retry-failed`,
      { headers: { "Idempotency-Key": idempotencyKey } });
  }

  async cancel(taskId, idempotencyKey) {
    return this.request("POST", `api/tasks/${encodeURIComponent(taskId)}/cancel`,
      { headers: { "Idempotency-Key": idempotencyKey } });
  }

  // The route answers 302 to a presigned URL; fetch follows it (the outputs bucket allows this
  // origin) and drops the Authorization header on the way, as it must.
  async zip(taskId) {
    const response = await fetch(this.url(`api/tasks/${encodeURIComponent(taskId)}/download-zip`),
      { headers: { Authorization: `Bearer ${this.token}` } });
    if (!response.ok) throw new ApiError(response.status, await readJson(response));
    return response.blob();
  }

  async download(url) {
    const response = await fetch(url);
    if (!response.ok) {
      throw new ApiError(response.status, { message: `download failed (HTTP ${response.status})`,
        error: "download_failed" });
    }
    return response.blob();
  }
}

export const newIdempotencyKey = () => crypto.randomUUID();

// The Hosted UI's authorization code (with its PKCE verifier) for the tokens; the ID token is
// the API's bearer token.
export const exchangeCode = async (config, code, redirectUri, verifier) => {
  const response = await fetch(config.token_url, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "authorization_code", client_id: config.client_id,
      code, redirect_uri: redirectUri, code_verifier: verifier }),
  });
  const payload = await readJson(response);
  if (!response.ok) {
    throw new ApiError(response.status, { message: "sign-in failed",
      error: (payload && payload.error) || "sign_in_failed" });
  }
  return payload.id_token;
};
