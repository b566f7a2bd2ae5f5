// Eye-for-an-eye in the ComfyUI page: two things the server and the node definitions cannot tell every frontend.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

// The pack's folder under custom_nodes/ (this file is served as /extensions/<folder>/eye_for_eye.js): the server
// lists our templates under that name, and our nodes' python_module is custom_nodes.<folder>.
const PACK = decodeURIComponent(new URL(import.meta.url).pathname.split("/").slice(-2)[0]);
const SEED_MODES = ["fixed", "increment", "decrement", "randomize"];

// The server lists a pack's templates in file-system order, where the main one can come last, and the template
// browser keeps that order. Our file names are numbered in the order a newcomer should open them.
// (A frontend without this method gets the server's order; the rest of this file still applies.)
if (typeof api.getWorkflowTemplates === "function") {
    const listTemplates = api.getWorkflowTemplates.bind(api);
    api.getWorkflowTemplates = async () => {
        const templates = await listTemplates();
        if (Array.isArray(templates?.[PACK])) {
            templates[PACK] = [...templates[PACK]].sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
        }
        return templates;
    };
}

// Invert's and Extract Features' seeds say control_after_generate="fixed" (a re-run reuses the cached inversion).
// Frontend 1.58.1 starts the control there; 1.32.9 starts every control at "randomize". A fresh node gets the mode
// its definition names; a node loaded from a workflow keeps its saved value, which the page applies afterwards.
app.registerExtension({
    name: "EyeForEye.FrontendDefaults",
    beforeRegisterNodeDef(nodeType, nodeData) {
        if (nodeData.python_module !== `custom_nodes.${PACK}`) return;
        const inputs = { ...nodeData.input?.required, ...nodeData.input?.optional };
        const modes = Object.entries(inputs)
            .map(([name, spec]) => [name, spec?.[1]?.control_after_generate])
            .filter(([, mode]) => SEED_MODES.includes(mode));
        if (!modes.length) return;
        const onNodeCreated = nodeType.prototype.onNodeCreated;
        nodeType.prototype.onNodeCreated = function () {
            const result = onNodeCreated?.apply(this, arguments);
            for (const [name, mode] of modes) {
                const control = this.widgets?.find((w) => w.name === name)?.linkedWidgets?.[0];
                if (control) control.value = mode;
            }
            return result;
        };
    },
});
