// Tobira's passkey ceremonies (WebAuthn), the only script its pages load. Everything else
// works without JavaScript; without it (or without WebAuthn) the passkey buttons stay
// hidden.
//
// A form marked data-passkey="register" | "signin" | "assert" carries the options the
// server made (data-options: webauthn-rs's JSON) and a hidden input name="credential".
// Its button [data-passkey-go] runs the ceremony, puts the browser's answer in that input
// as JSON and submits the form. A "signin" form with data-conditional also starts the
// browser's autofill (conditional mediation) when the page loads.
"use strict";
(function () {
  if (!window.PublicKeyCredential || !navigator.credentials) return;

  const b64u = {
    dec: (s) =>
      Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0)),
    enc: (b) =>
      btoa(String.fromCharCode(...new Uint8Array(b)))
        .replace(/\+/g, "-")
        .replace(/\//g, "_")
        .replace(/=+$/, ""),
  };

  function creationOptions(pk) {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) {
      return PublicKeyCredential.parseCreationOptionsFromJSON(pk);
    }
    return Object.assign({}, pk, {
      challenge: b64u.dec(pk.challenge),
      user: Object.assign({}, pk.user, { id: b64u.dec(pk.user.id) }),
      excludeCredentials: (pk.excludeCredentials || []).map((c) =>
        Object.assign({}, c, { id: b64u.dec(c.id) })
      ),
    });
  }

  function requestOptions(pk) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) {
      return PublicKeyCredential.parseRequestOptionsFromJSON(pk);
    }
    return Object.assign({}, pk, {
      challenge: b64u.dec(pk.challenge),
      allowCredentials: (pk.allowCredentials || []).map((c) =>
        Object.assign({}, c, { id: b64u.dec(c.id) })
      ),
    });
  }

  // The answer as webauthn-rs reads it (base64url without padding).
  function credentialJSON(c) {
    if (c.toJSON) return c.toJSON();
    const r = c.response;
    const out = {
      id: c.id,
      rawId: b64u.enc(c.rawId),
      type: c.type,
      clientExtensionResults: c.getClientExtensionResults(),
      response: { clientDataJSON: b64u.enc(r.clientDataJSON) },
    };
    if (r.attestationObject) {
      out.response.attestationObject = b64u.enc(r.attestationObject);
      out.response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      out.response.authenticatorData = b64u.enc(r.authenticatorData);
      out.response.signature = b64u.enc(r.signature);
      // An absent handle stays absent ("" would be refused as a malformed handle).
      if (r.userHandle) out.response.userHandle = b64u.enc(r.userHandle);
    }
    return out;
  }

  // Browsers run one WebAuthn request at a time: the autofill's is aborted before a
  // button starts its own.
  let conditional = null;

  function finish(form, credential) {
    form.querySelector('input[name="credential"]').value = JSON.stringify(
      credentialJSON(credential)
    );
    form.submit();
  }

  function failed(form, error) {
    if (error && error.name === "AbortError") return;
    const shown = form.querySelector("[data-passkey-error]");
    if (shown) {
      shown.textContent = shown.getAttribute("data-text") || "";
      shown.hidden = false;
    }
  }

  async function run(form) {
    const options = JSON.parse(form.getAttribute("data-options"));
    if (conditional) {
      conditional.abort();
      conditional = null;
    }
    try {
      const kind = form.getAttribute("data-passkey");
      const credential =
        kind === "register"
          ? await navigator.credentials.create({ publicKey: creationOptions(options.publicKey) })
          : await navigator.credentials.get({ publicKey: requestOptions(options.publicKey) });
      if (credential) finish(form, credential);
    } catch (error) {
      failed(form, error);
    }
  }

  async function autofill(form) {
    if (
      !PublicKeyCredential.isConditionalMediationAvailable ||
      !(await PublicKeyCredential.isConditionalMediationAvailable())
    ) {
      return;
    }
    const options = JSON.parse(form.getAttribute("data-options"));
    conditional = new AbortController();
    try {
      const credential = await navigator.credentials.get({
        publicKey: requestOptions(options.publicKey),
        mediation: "conditional",
        signal: conditional.signal,
      });
      if (credential) finish(form, credential);
    } catch (error) {
      // The autofill was dismissed or refused (no passkey here, another request took
      // over): nothing the member asked for failed, so nothing is shown.
    }
  }

  for (const form of document.querySelectorAll("form[data-passkey]")) {
    const button = form.querySelector("[data-passkey-go]");
    form.hidden = false;
    if (button) {
      button.addEventListener("click", (event) => {
        event.preventDefault();
        run(form);
      });
    }
    if (form.getAttribute("data-passkey") === "signin" && form.hasAttribute("data-conditional")) {
      autofill(form);
    }
  }
})();
