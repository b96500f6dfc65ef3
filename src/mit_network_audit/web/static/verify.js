// Runs verify in the background and polls its progress (no inline script: CSP forbids it).
document.getElementById("verify-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const bar = document.getElementById("verify-progress");
  const out = document.getElementById("verify-result");
  out.textContent = "verifying…";
  bar.hidden = false;
  const started = await fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin" });
  if (!started.ok) { out.textContent = "could not start verify: " + started.status; return; }
  const { job } = await started.json();
  for (;;) {
    const polled = await fetch("/api/verify/" + job, { credentials: "same-origin" });
    if (!polled.ok) { out.textContent = "could not follow verify: " + polled.status; out.className = "bad"; return; }
    const status = await polled.json();
    bar.max = Math.max(status.total, 1);
    bar.value = status.done;
    if (status.error) { out.textContent = "verify could not run: " + status.error; out.className = "bad"; return; }
    if (status.result) {
      const r = status.result;
      out.textContent = r.ok ? `chain intact: ${r.rows_checked} rows` : `TAMPERED at chain_seq ${r.first_bad_seq}: ${r.message}`;
      out.className = r.ok ? "ok" : "bad";
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
});
