// Copy buttons: each element marked `data-copy` gets a "copy" button after it, copying the
// attribute's value (or, when it is empty, the element's text). Pages work without this
// script; it only saves selecting the text by hand. Nothing here reads from other sites.
"use strict";

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(text);
  }
  // Plain http on a LAN has no clipboard API: select a scratch field and copy it.
  var scratch = document.createElement("textarea");
  scratch.value = text;
  scratch.setAttribute("readonly", "");
  scratch.style.position = "fixed";
  scratch.style.opacity = "0";
  document.body.appendChild(scratch);
  scratch.select();
  var copied = document.execCommand("copy");
  scratch.remove();
  return copied ? Promise.resolve() : Promise.reject(new Error("copy refused"));
}

function addCopyButton(element) {
  var text = element.getAttribute("data-copy") || element.textContent;
  var button = document.createElement("button");
  button.type = "button";
  button.className = "copy";
  button.textContent = "copy";
  button.setAttribute("aria-label", "Copy " + text);
  button.addEventListener("click", function () {
    copyText(text).then(
      function () { button.textContent = "copied"; },
      function () { button.textContent = "copy failed"; }
    );
    window.setTimeout(function () { button.textContent = "copy"; }, 2000);
  });
  element.after(button);
}

document.querySelectorAll("[data-copy]").forEach(addCopyButton);
