// The upload form, sent by XMLHttpRequest so a progress bar can follow the bytes (fetch
// cannot report upload progress). Without this script the form posts as it is.
"use strict";
for (const form of document.querySelectorAll("form[data-upload]")) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const box = form.querySelector(".progress");
    const bar = form.querySelector("progress");
    const text = form.querySelector("output");
    const problem = form.querySelector("#problem");
    const button = form.querySelector("button[type=submit]");
    const mb = (n) => (n / 1e6).toFixed(1) + " MB";
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      bar.max = e.total;
      bar.value = e.loaded;
      text.textContent = mb(e.loaded) + " of " + mb(e.total);
    });
    request.addEventListener("load", () => {
      let answer = {};
      try { answer = JSON.parse(request.responseText); } catch (_) { /* not JSON */ }
      if (request.status < 300 && answer.url) {
        text.textContent = "Committed " + answer.commit.slice(0, 10);
        window.location.assign(answer.url);
        return;
      }
      problem.textContent = (answer.code ? answer.code + ": " : "") + (answer.error || request.statusText);
      problem.hidden = false;
      button.disabled = false;
    });
    request.addEventListener("error", () => {
      problem.textContent = "The connection to the node was lost; nothing was committed.";
      problem.hidden = false;
      button.disabled = false;
    });
    problem.hidden = true;
    box.hidden = false;
    button.disabled = true;
    request.send(new FormData(form));
  });
}
