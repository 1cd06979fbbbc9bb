// A Plotly FigureWidget front end that answers anywidget at once and loads Plotly afterwards.
//
// Plotly ships its widget as one ~5 MB ES module sent with every chart. anywidget gives a model
// 2 s to load its module and bind, after which the model stays broken: every later update from
// Python is dropped. Parsing the bundle takes ~1.7 s on an idle 2-core machine, so charts broke
// under load. Here the small module binds at once. Plotly's bundle is the state of one plain
// widget model per kernel (`_plotly_bundle`, sent once, no kernel round trip), imported once per
// page and shared by all charts; updates that arrive before it is ready are replayed in order.

const KEY = "__workbenchPlotlyWidget";
const PY2JS = ["_py2js_addTraces", "_py2js_deleteTraces", "_py2js_moveTraces", "_py2js_restyle", "_py2js_relayout",
  "_py2js_update", "_py2js_animate", "_py2js_removeLayoutProps", "_py2js_removeTraceProps"];

async function importBundle(model) {
  const reference = String(model.get("_plotly_bundle") ?? "");
  if (!reference.startsWith("IPY_MODEL_")) throw new Error(`no Plotly bundle reference (${reference || "empty"})`);
  const holder = await model.widget_manager.get_model(reference.slice("IPY_MODEL_".length));
  const url = URL.createObjectURL(new Blob([holder.get("source")], { type: "text/javascript" }));
  try {
    return await import(/* webpackIgnore: true */ url);
  } finally {
    URL.revokeObjectURL(url);
  }
}

/** Plotly's widget module, imported by the first chart of the page and shared with the others. */
function plotlyModule(model) {
  globalThis[KEY] ??= importBundle(model).catch((error) => {
    globalThis[KEY] = undefined; // let the next chart try again
    throw error;
  });
  return globalThis[KEY];
}

export default () => {
  let ready;
  return {
    initialize({ model }) {
      const queue = [];
      const recorders = PY2JS.map((name) => [name, () => {
        const value = model.get(name);
        if (value !== null && value !== undefined) queue.push([name, value]);
      }]);
      for (const [name, record] of recorders) model.on(`change:${name}`, record);
      ready = plotlyModule(model).then((module) => {
        for (const [name, record] of recorders) model.off(`change:${name}`, record);
        // Plotly's model reads each update with model.get(name) inside its change handler: give it
        // the queued value for that call without touching the synced state.
        const handlers = new Map();
        let replaying = null;
        let initializing = true;
        const proxy = {
          ...model,
          get: (name) => (replaying && replaying[0] === name ? replaying[1] : model.get(name)),
          on(event, handler) {
            model.on(event, handler);
            if (initializing) handlers.set(event, [...(handlers.get(event) ?? []), handler]);
          },
        };
        const widget = module.default();
        widget.initialize({ model: proxy });
        initializing = false;
        for (const entry of queue) {
          replaying = entry;
          for (const handler of handlers.get(`change:${entry[0]}`) ?? []) handler();
        }
        replaying = null;
        handlers.clear();
        return widget;
      });
      ready.catch((error) => console.error("[workbench] the Plotly chart could not load:", error));
    },
    async render({ model, el }) {
      const widget = await ready;
      return widget.render({ model, el });
    },
  };
};
