/** @odoo-module **/
// Trust Report client action: the verdict and its evidence lines, each linking to the journal rows behind it.
import { Component, onWillStart, useState } from "@odoo/owl";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";

export class TrustReport extends Component {
    static template = "mit_network_audit.TrustReport";
    static props = ["*"];

    setup() {
        this.orm = useService("orm");
        this.action = useService("action");
        this.state = useState({ days: 7, report: null, error: null, loading: true });
        onWillStart(() => this.load());
    }

    async load() {
        this.state.loading = true;
        try {
            this.state.report = await this.orm.call("network.audit.report", "get_trust_report", [], {
                days: this.state.days,
            });
            this.state.error = null;
        } catch (e) {
            this.state.error = (e && e.data && e.data.message) || String(e);
        }
        this.state.loading = false;
    }

    async setDays(days) {
        this.state.days = days;
        await this.load();
    }

    verdictClass(verdict) {
        return { alarm: "text-bg-danger", review: "text-bg-warning", all_clear: "text-bg-success" }[verdict] ||
            "text-bg-secondary";
    }

    openRows(seqs) {
        this.action.doAction({
            type: "ir.actions.act_window", name: "Evidence", res_model: "network.egress_log",
            views: [[false, "list"], [false, "form"]], domain: [["chain_seq", "in", seqs]],
        });
    }
}

registry.category("actions").add("mit_network_audit.trust_report", TrustReport);
