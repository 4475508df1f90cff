//! A blocking client of the admin API, used by the `tenantry` CLI's client commands (and usable
//! against Cloudflare's own API, whose paths and envelope it follows).

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

/// Where the admin API is and who we are.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    account: String,
    token: String,
    agent: ureq::Agent,
}

/// A multipart boundary that cannot occur in a JSON metadata part (it is not valid JSON) and is
/// checked against the module bytes before use.
const BOUNDARY: &str = "tenantry-boundary-7f3a9c1e5b2d4086";

impl Client {
    /// `base` is the API root, e.g. `http://127.0.0.1:8787/client/v4`.
    pub fn new(base: &str, account: &str, token: &str) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        Client {
            base: base.trim_end_matches('/').to_string(),
            account: account.to_string(),
            token: token.to_string(),
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/accounts/{}/workers/dispatch/namespaces{path}",
            self.base, self.account
        )
    }

    /// Sends a request and unwraps the envelope: the `result` (and `result_info`) on success, the
    /// API's error messages otherwise.
    fn call(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(Value, Value)> {
        self.call_url(method, &self.url(path), content_type, body)
    }

    /// Sends a request to `url` and unwraps the envelope of the answer.
    fn call_url(
        &self,
        method: &str,
        url: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(Value, Value)> {
        let (status, text) = self.send(method, url, content_type, body)?;
        Self::unwrap_envelope(method, url, status, &text)
    }

    /// Sends a request; the status and the body.
    fn send(
        &self,
        method: &str,
        url: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let url = url.to_string();
        let auth = format!("Bearer {}", self.token);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            (m, body) => {
                let builder = match m {
                    "POST" => self.agent.post(&url),
                    "PUT" => self.agent.put(&url),
                    "PATCH" => self.agent.patch(&url),
                    other => bail!("unsupported method {other}"),
                }
                .header("Authorization", &auth)
                .header("Content-Type", content_type.unwrap_or("application/json"));
                builder.send(body.unwrap_or_default())
            }
        };
        let mut response = response.with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .with_context(|| format!("reading the response of {method} {url}"))?;
        Ok((status, body))
    }

    /// The `result` (and `result_info`) of an envelope, or the API's error messages.
    fn unwrap_envelope(
        method: &str,
        url: &str,
        status: u16,
        body: &[u8],
    ) -> anyhow::Result<(Value, Value)> {
        let text = String::from_utf8_lossy(body);
        let v: Value = serde_json::from_str(&text).with_context(|| {
            format!("{method} {url} answered {status} with a non-JSON body: {text}")
        })?;
        if v["success"] != json!(true) {
            let messages: Vec<String> = v["errors"]
                .as_array()
                .map(|errors| {
                    errors
                        .iter()
                        .map(|e| {
                            format!(
                                "{} (code {})",
                                e["message"].as_str().unwrap_or("?"),
                                e["code"]
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            return Err(anyhow!("{status} {}", messages.join("; ")));
        }
        Ok((v["result"].clone(), v["result_info"].clone()))
    }

    fn kv_url(&self, path: &str) -> String {
        format!(
            "{}/accounts/{}/storage/kv/namespaces{path}",
            self.base, self.account
        )
    }

    fn kv_call(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(Value, Value)> {
        self.call_url(method, &self.kv_url(path), content_type, body)
    }

    pub fn kv_namespaces(&self) -> anyhow::Result<Value> {
        let mut all = Vec::new();
        for page in 1.. {
            let (result, info) =
                self.kv_call("GET", &format!("?page={page}&per_page=100"), None, None)?;
            all.extend(result.as_array().cloned().unwrap_or_default());
            if all.len() as u64 >= info["total_count"].as_u64().unwrap_or(0) {
                break;
            }
        }
        Ok(Value::Array(all))
    }

    /// The id of the KV namespace `id_or_title` (a title is looked up).
    pub fn kv_namespace_id(&self, id_or_title: &str) -> anyhow::Result<String> {
        let all = self.kv_namespaces()?;
        all.as_array()
            .into_iter()
            .flatten()
            .find(|n| n["id"] == id_or_title || n["title"] == id_or_title)
            .and_then(|n| n["id"].as_str().map(str::to_string))
            .ok_or_else(|| anyhow!("no KV namespace with id or title `{id_or_title}`"))
    }

    pub fn kv_create_namespace(&self, title: &str) -> anyhow::Result<Value> {
        let body = json!({ "title": title }).to_string().into_bytes();
        Ok(self.kv_call("POST", "", None, Some(body))?.0)
    }

    pub fn kv_rename_namespace(&self, id: &str, title: &str) -> anyhow::Result<Value> {
        let body = json!({ "title": title }).to_string().into_bytes();
        Ok(self.kv_call("PUT", &format!("/{id}"), None, Some(body))?.0)
    }

    pub fn kv_delete_namespace(&self, id: &str) -> anyhow::Result<()> {
        self.kv_call("DELETE", &format!("/{id}"), None, None)?;
        Ok(())
    }

    fn key_path(key: &str) -> String {
        percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC).to_string()
    }

    /// A value's bytes.
    pub fn kv_get(&self, id: &str, key: &str) -> anyhow::Result<Vec<u8>> {
        let url = self.kv_url(&format!("/{id}/values/{}", Self::key_path(key)));
        let (status, body) = self.send("GET", &url, None, None)?;
        if status == 200 {
            return Ok(body);
        }
        Self::unwrap_envelope("GET", &url, status, &body)?;
        bail!("GET {url} answered {status}")
    }

    pub fn kv_put(
        &self,
        id: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<u64>,
    ) -> anyhow::Result<()> {
        let query = ttl
            .map(|t| format!("?expiration_ttl={t}"))
            .unwrap_or_default();
        let path = format!("/{id}/values/{}{query}", Self::key_path(key));
        self.kv_call("PUT", &path, Some("application/octet-stream"), Some(value))?;
        Ok(())
    }

    pub fn kv_delete(&self, id: &str, key: &str) -> anyhow::Result<()> {
        self.kv_call(
            "DELETE",
            &format!("/{id}/values/{}", Self::key_path(key)),
            None,
            None,
        )?;
        Ok(())
    }

    /// Every key with `prefix`, following cursors.
    pub fn kv_keys(&self, id: &str, prefix: &str) -> anyhow::Result<Vec<Value>> {
        let mut keys = Vec::new();
        let mut cursor = String::new();
        loop {
            let path = format!(
                "/{id}/keys?prefix={}&cursor={cursor}",
                Self::key_path(prefix)
            );
            let (result, info) = self.kv_call("GET", &path, None, None)?;
            keys.extend(result.as_array().cloned().unwrap_or_default());
            cursor = info["cursor"].as_str().unwrap_or("").to_string();
            if cursor.is_empty() {
                return Ok(keys);
            }
        }
    }

    /// Every namespace, following the list's cursor page by page.
    pub fn list_namespaces(&self) -> anyhow::Result<Value> {
        let mut all = Vec::new();
        let mut cursor = String::new();
        loop {
            let (result, info) = self.call("GET", &format!("?cursor={cursor}"), None, None)?;
            all.extend(result.as_array().cloned().unwrap_or_default());
            match info["cursor"].as_str() {
                Some(next) if !next.is_empty() => cursor = next.to_string(),
                _ => return Ok(Value::Array(all)),
            }
        }
    }

    pub fn create_namespace(&self, name: &str) -> anyhow::Result<Value> {
        let body = json!({ "name": name }).to_string().into_bytes();
        Ok(self.call("POST", "", None, Some(body))?.0)
    }

    pub fn get_namespace(&self, name: &str) -> anyhow::Result<Value> {
        Ok(self.call("GET", &format!("/{name}"), None, None)?.0)
    }

    pub fn delete_namespace(&self, name: &str) -> anyhow::Result<()> {
        self.call("DELETE", &format!("/{name}"), None, None)?;
        Ok(())
    }

    /// Uploads a module with metadata (bindings, tags) as Cloudflare's multipart upload.
    pub fn deploy(
        &self,
        ns: &str,
        name: &str,
        module_name: &str,
        module: &[u8],
        metadata: &Value,
    ) -> anyhow::Result<Value> {
        if module
            .windows(BOUNDARY.len())
            .any(|w| w == BOUNDARY.as_bytes())
        {
            bail!("the module contains the multipart boundary; rename it and retry");
        }
        let mut body = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\
             Content-Type: application/json\r\n\r\n{metadata}\r\n--{BOUNDARY}\r\n\
             Content-Disposition: form-data; name=\"{module_name}\"; filename=\"{module_name}\"\r\n\
             Content-Type: application/wasm\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(module);
        body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        let ct = format!("multipart/form-data; boundary={BOUNDARY}");
        Ok(self
            .call(
                "PUT",
                &format!("/{ns}/scripts/{name}"),
                Some(&ct),
                Some(body),
            )?
            .0)
    }

    /// Lists scripts (following the cursor through every page), optionally filtered by
    /// `tag:yes` / `tag:no` filters.
    pub fn list_scripts(&self, ns: &str, tags: &[String]) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let mut query: Vec<(&str, &str)> = vec![("cursor", &cursor)];
            let tags = tags.join(",");
            if !tags.is_empty() {
                query.push(("tags", &tags));
            }
            let q = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .finish();
            let (result, info) = self.call("GET", &format!("/{ns}/scripts?{q}"), None, None)?;
            out.extend(result.as_array().cloned().unwrap_or_default());
            cursor = info["cursor"].as_str().unwrap_or("").to_string();
            if cursor.is_empty() {
                return Ok(out);
            }
        }
    }

    pub fn delete_script(&self, ns: &str, name: &str) -> anyhow::Result<()> {
        self.call("DELETE", &format!("/{ns}/scripts/{name}"), None, None)?;
        Ok(())
    }

    /// Deletes every script matching the tag filters; returns how many.
    pub fn delete_scripts_by_tags(&self, ns: &str, tags: &[String]) -> anyhow::Result<u64> {
        let q = form_urlencoded::Serializer::new(String::new())
            .append_pair("tags", &tags.join(","))
            .finish();
        let (_, info) = self.call("DELETE", &format!("/{ns}/scripts?{q}"), None, None)?;
        Ok(info["deleted_count"].as_u64().unwrap_or(0))
    }

    pub fn get_tags(&self, ns: &str, name: &str) -> anyhow::Result<Value> {
        Ok(self
            .call("GET", &format!("/{ns}/scripts/{name}/tags"), None, None)?
            .0)
    }

    pub fn set_tags(&self, ns: &str, name: &str, tags: &[String]) -> anyhow::Result<Value> {
        let body = serde_json::to_vec(tags)?;
        Ok(self
            .call(
                "PUT",
                &format!("/{ns}/scripts/{name}/tags"),
                None,
                Some(body),
            )?
            .0)
    }

    pub fn put_secret(&self, ns: &str, name: &str, key: &str, value: &str) -> anyhow::Result<()> {
        let body = json!({"name": key, "text": value, "type": "secret_text"})
            .to_string()
            .into_bytes();
        self.call(
            "PUT",
            &format!("/{ns}/scripts/{name}/secrets"),
            None,
            Some(body),
        )?;
        Ok(())
    }

    pub fn list_secrets(&self, ns: &str, name: &str) -> anyhow::Result<Value> {
        Ok(self
            .call("GET", &format!("/{ns}/scripts/{name}/secrets"), None, None)?
            .0)
    }

    pub fn delete_secret(&self, ns: &str, name: &str, key: &str) -> anyhow::Result<()> {
        self.call(
            "DELETE",
            &format!("/{ns}/scripts/{name}/secrets/{key}"),
            None,
            None,
        )?;
        Ok(())
    }
}
