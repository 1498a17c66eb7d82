// Balance, plan and the ledger (grants, charges, refunds), newest first, a page at a time.
import { el, clear } from "./dom.js";
import { notifyError } from "./notices.js";

const PAGE_SIZE = 10;
const SIGN = { grant: "+", refund: "+", charge: "−" };

const when = (iso) => new Date(iso).toLocaleString();

export class AccountPanel {
  constructor(api) {
    this.api = api;
    this.pages = [null];  // the cursor of each page seen; page 0 starts at the newest entry
    this.page = 0;
    this.balance = el("p", { className: "balance", "aria-live": "polite" });
    this.rows = el("tbody");
    this.newer = el("button", { type: "button", text: "Newer", disabled: true,
      onclick: () => this.show(this.page - 1) });
    this.older = el("button", { type: "button", text: "Older", disabled: true,
      onclick: () => this.show(this.page + 1) });
    this.node = el("section", { className: "card", "aria-labelledby": "account-title" },
      el("h2", { id: "account-title", text: "Quota" }), this.balance,
      el("table", { className: "ledger", "aria-label": "Ledger" },
        el("thead", {}, el("tr", {}, ["When", "Kind", "Amount", "Task", "Images"].map(
          (name) => el("th", { scope: "col", text: name })))),
        this.rows),
      el("div", { className: "actions" }, this.newer, this.older));
  }

  refresh() {
    this.pages = [null];
    return this.show(0);
  }

  async show(page) {
    try {
      const data = await this.api.quota(this.pages[page], PAGE_SIZE);
      this.page = page;
      this.pages[page + 1] = data.next_cursor;
      this.render(data);
    } catch (error) {
      notifyError(error, "Reading the quota");
    }
  }

  render(data) {
    this.balance.textContent = `Balance: ${data.balance} (plan ${data.plan})`;
    clear(this.rows);
    data.ledger.forEach((entry) => this.rows.append(el("tr", { className: entry.kind },
      el("td", { text: when(entry.created_at) }), el("td", { text: entry.kind }),
      el("td", { className: "amount", text: `${SIGN[entry.kind] || ""}${entry.amount}` }),
      el("td", {}, entry.task_id ? el("code", { text: entry.task_id.slice(0, 8) }) : "—"),
      el("td", { text: entry.items.length || "" }))));
    if (!data.ledger.length) {
      this.rows.append(el("tr", {}, el("td", { colspan: 5, text: "No entries yet." })));
    }
    this.newer.disabled = this.page === 0;
    this.older.disabled = !data.next_cursor;
  }
}
