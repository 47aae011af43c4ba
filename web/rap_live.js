// RAP Live, a sidebar tab: speak into the microphone (or play an audio file) and the portrait talks back, live, from
// the server's /rap/live/ws (nodes/live_server.py). The panel is built once and kept across openings of the tab, so
// a talk goes on while the tab is closed.
import { app } from "../../scripts/app.js";
import { buildPanel } from "./rap_live/panel.js";

let tab = null;

app.registerExtension({
  name: "RAP.Live",
  setup() {
    app.extensionManager.registerSidebarTab({
      id: "rap-live",
      icon: "pi pi-video",
      title: "RAP Live",
      tooltip: "RAP Live",
      type: "custom",
      render: (element) => {
        tab ??= buildPanel();
        element.append(tab.panel);
        tab.refresh();
      },
    });
  },
});
