/** @odoo-module **/
// The Trust Report client action in a real browser: the OWL component loads the verdict from the
// server, shows no error, and reloads it for another period (tests/test_audit.py runs this tour).
import { registry } from "@web/core/registry";

const VERDICTS = ["alarm", "review", "all_clear"];

function checkVerdict() {
    const root = document.querySelector(".o_mna_trust_report");
    if (root.querySelector(".alert-danger")) {
        throw new Error(`Trust Report error: ${root.querySelector(".alert-danger").textContent}`);
    }
    const verdict = root.querySelector(".o_mna_verdict").textContent.trim();
    if (!VERDICTS.includes(verdict)) {
        throw new Error(`unexpected verdict ${JSON.stringify(verdict)}`);
    }
    if (!root.querySelector("table tbody")) {
        throw new Error("no evidence table");
    }
    console.log(`mna trust report verdict: ${verdict}`);
}

registry.category("web_tour.tours").add("mit_network_audit_trust_report", {
    url: "/odoo/action-mit_network_audit.action_trust_report",
    steps: () => [
        {
            content: "the verdict is shown for the default period (7 days)",
            trigger: ".o_mna_trust_report button.btn-primary:contains('7 days')",
        },
        {
            content: "a verdict badge and the evidence table, no error",
            trigger: ".o_mna_trust_report .o_mna_verdict",
            run: checkVerdict,
        },
        {
            content: "ask for 30 days",
            trigger: ".o_mna_trust_report button:contains('30 days')",
            run: "click",
        },
        {
            content: "the report reloaded for 30 days",
            trigger: ".o_mna_trust_report button.btn-primary:contains('30 days')",
        },
        {
            content: "still a verdict, no error",
            trigger: ".o_mna_trust_report .o_mna_verdict",
            run: checkVerdict,
        },
    ],
});
