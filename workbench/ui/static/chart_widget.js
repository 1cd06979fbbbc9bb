// A Plotly FigureWidget front end that answers anywidget at once and loads Plotly afterwards.
//
// Plotly ships its widget as one ~5 MB ES module sent with every chart. anywidget gives a model
// 2 s to load its module and bind, after which the model stays broken: every later update from
// Python is dropped. Parsing the bundle takes ~1.7 s on an idle 2-core machine, so charts broke
// under load. Here the small module binds at once and imports Plotly's bundle once per page from the
// static file the kernel published under the server's labextensions URL (the browser caches it across
// pages); where that fails, it asks the kernel for the bundle over the comm of the one plain widget
// model that every chart refers to (`_plotly_bundle`). Updates that arrive before Plotly is ready are
// replayed in order.

const KEY = "__workbenchPlotlyWidget";
const PY2JS = ["_py2js_addTraces", "_py2js_deleteTraces", "_py2js_moveTraces", "_py2js_restyle", "_py2js_relayout",
  "_py2js_update", "_py2js_animate", "_py2js_removeLayoutProps", "_py2js_removeTraceProps"];

/** The server's URL for files under labextensions/ (Voilà: /voila/labextensions, JupyterLab: /lab/extensions). */
function labextensionsUrl() {
  const element = document.getElementById("jupyter-config-data");
  try {
    const config = element ? JSON.parse(element.textContent) : {};
    return config.fullLabextensionsUrl ? String(config.fullLabextensionsUrl).replace(/\/?$/, "/") : null;
  } catch {
    return null;
  }
}

/** The bundle's source from the kernel: asked for once, answered as the model's `source`. */
function sourceFromKernel(holder) {
  if (holder.get("source")) return Promise.resolve(holder.get("source"));
  return new Promise((resolve) => {
    holder.once("change:source", () => resolve(holder.get("source")));
    holder.send({ request: "source" });
  });
}

async function importSource(source) {
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  try {
    return await import(/* webpackIgnore: true */ url);
  } finally {
    URL.revokeObjectURL(url);
  }
}

async function importBundle(model) {
  const reference = String(model.get("_plotly_bundle") ?? "");
  if (!reference.startsWith("IPY_MODEL_")) throw new Error(`no Plotly bundle reference (${reference || "empty"})`);
  const holder = await model.widget_manager.get_model(reference.slice("IPY_MODEL_".length));
  const base = labextensionsUrl();
  const path = holder.get("path");
  if (base && path) {
    try {
      return await import(/* webpackIgnore: true */ new URL(base + path, document.baseURI).href);
    } catch (error) {
      console.warn("[workbench] Plotly's bundle is not served as a file here; asking the kernel:", error);
    }
  }
  return importSource(await sourceFromKernel(holder));
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
