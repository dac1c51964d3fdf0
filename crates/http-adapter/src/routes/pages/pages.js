// Keel's development pages: the link's token is POSTed only when the user submits the form,
// never on load (a GET must not spend a token: mail scanners open links).
"use strict";
(function () {
  const token = new URLSearchParams(window.location.search).get("token") || "";
  const page = document.body.dataset.page;
  const result = document.getElementById("result");
  const form = document.getElementById("form");
  const show = (text) => { result.textContent = text; };
  if (!token) {
    show("This link has no token.");
    form.hidden = true;
    return;
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const request = page === "verify-email"
      ? { path: "/api/v1/auth/verify-email", body: { token } }
      : {
          path: "/api/v1/auth/password-reset/confirm",
          body: { token, password: document.getElementById("password").value },
        };
    try {
      const response = await fetch(request.path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(request.body),
      });
      if (response.ok) {
        form.hidden = true;
        show(page === "verify-email"
          ? "Your address is verified."
          : "Your password is set. Every session was signed out; log in again.");
        return;
      }
      const problem = await response.json().catch(() => ({}));
      const fields = (problem.errors || []).map((e) => e.message).join(" ");
      show(problem.detail ? `${problem.detail} ${fields}`.trim() : `Error ${response.status}`);
    } catch (error) {
      show(`The request failed: ${error}`);
    }
  });
})();
