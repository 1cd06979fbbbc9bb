// The panels' charts in the browser: Plotly's basic bundle and a small front end for plotly.py's FigureWidget.
//
// plotly.py's own front end is one ~5 MB ES module (all of plotly.js plus the widget) that anywidget gives 2 s
// to load and bind, and whose parse held a 2-core machine's main thread for 1.5-2.8 s on every page. The
// panels draw only scatter and bar traces, so the page loads Plotly's basic bundle instead (scatter, bar,
// pie: ~1.2 MB, `plotly-basic.min.js`, the same plotly.js version as plotly.py's), once per page, from the
// static file the kernel published under the server's labextensions URL (the browser caches it across
// pages). Where that fails, it asks the kernel for the bundle over the comm of the one plain widget model
// every chart refers to (`_plotly_bundle`).
//
// The Python side is plotly.py's FigureWidget unchanged: the figure arrives as `_widget_data` /
// `_widget_layout` (current at the time the page asks, see ChartWidget.get_state) and every later change as a
// one-shot `_py2js_*` message, applied here with the plotly.js call of the same name. Messages that arrive
// while no view is drawn are kept and replayed, in order, by the next view.

const KEY = "__workbenchPlotly";
const TYPED = {
  int8: Int8Array, uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array,
  int32: Int32Array, uint32: Uint32Array, float32: Float32Array, float64: Float64Array,
};
const CONFIG = { displaylogo: false, responsive: false };

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
    await import(/* webpackIgnore: true */ url);
  } finally {
    URL.revokeObjectURL(url);
  }
}

/** Import the bundle (it sets `window.Plotly`): the published file, else its source from the kernel. */
async function loadPlotly(model) {
  const reference = String(model.get("_plotly_bundle") ?? "");
  if (!reference.startsWith("IPY_MODEL_")) throw new Error(`no Plotly bundle reference (${reference || "empty"})`);
  const holder = await model.widget_manager.get_model(reference.slice("IPY_MODEL_".length));
  const base = labextensionsUrl();
  const path = holder.get("path");
  let loaded = false;
  if (base && path) {
    try {
      await import(/* webpackIgnore: true */ new URL(base + path, document.baseURI).href);
      loaded = !!globalThis.Plotly;
    } catch (error) {
      console.warn("[workbench] Plotly's bundle is not served as a file here; asking the kernel:", error);
    }
  }
  if (!loaded) await importSource(await sourceFromKernel(holder));
  if (!globalThis.Plotly) throw new Error("Plotly's bundle loaded but defined no Plotly");
  return globalThis.Plotly;
}

/** plotly.js, imported by the first chart of the page and shared with the others. */
function plotly(model) {
  globalThis[KEY] ??= loadPlotly(model).catch((error) => {
    globalThis[KEY] = undefined; // let the next chart try again
    throw error;
  });
  return globalThis[KEY];
}

/** plotly.py's serialised values back to JavaScript: numpy arrays come as {buffer, dtype, shape}. */
function fromPy(value) {
  if (value === "_undefined_") return undefined;
  if (Array.isArray(value)) return value.map(fromPy);
  if (value instanceof DataView || value instanceof ArrayBuffer) return value;
  if (value && typeof value === "object") {
    const Typed = TYPED[value.dtype];
    if (Typed && "buffer" in value && "shape" in value) {
      const b = value.buffer;
      const bytes = b instanceof ArrayBuffer ? b : b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
      return new Typed(bytes); // a copy: aligned for its element size
    }
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = fromPy(v);
    return out;
  }
  return value;
}

/** ["xaxis", "range"] → "xaxis.range"; ["shapes", 0, "x0"] → "shapes[0].x0" (plotly.js attribute strings). */
function attribute(path) {
  return path.reduce((s, p) => (typeof p === "number" ? `${s}[${p}]` : s ? `${s}.${p}` : String(p)), "");
}

/** One plotly.js call per `_py2js_*` message, with the message's fields (see plotly.py's basewidget.py). */
const APPLY = {
  _py2js_addTraces: (P, gd, m) => P.addTraces(gd, fromPy(m.trace_data)),
  _py2js_deleteTraces: (P, gd, m) => P.deleteTraces(gd, m.delete_inds),
  _py2js_moveTraces: (P, gd, m) => P.moveTraces(gd, m.current_trace_inds, m.new_trace_inds),
  _py2js_restyle: (P, gd, m) => P.restyle(gd, fromPy(m.restyle_data), m.restyle_traces ?? undefined),
  _py2js_relayout: (P, gd, m) => P.relayout(gd, fromPy(m.relayout_data)),
  _py2js_update: (P, gd, m) =>
    P.update(gd, fromPy(m.style_data), fromPy(m.layout_data), m.style_traces ?? undefined),
  _py2js_animate: (P, gd, m) =>
    P.animate(
      gd,
      { data: fromPy(m.style_data), layout: fromPy(m.layout_data), traces: m.style_traces ?? undefined },
      fromPy(m.animation_opts),
    ),
  _py2js_removeLayoutProps: (P, gd, m) =>
    P.relayout(gd, Object.fromEntries((m.remove_props ?? []).map((p) => [attribute(p), null]))),
  _py2js_removeTraceProps: (P, gd, m) =>
    P.restyle(gd, Object.fromEntries((m.remove_props ?? []).map((p) => [attribute(p), null])), [m.remove_trace]),
};

export default () => {
  const views = new Set(); // the drawn graph divs of this model
  const pending = []; // messages that came while no view was drawn
  let last = null; // the graph div drawn last: a later view starts from its figure
  let chain = Promise.resolve(); // plotly.js calls, one after another in the order the messages came

  function run(step) {
    chain = chain.then(step).catch((error) => console.error("[workbench] chart update failed:", error));
    return chain;
  }

  return {
    initialize({ model }) {
      for (const name of Object.keys(APPLY)) {
        model.on(`change:${name}`, () => {
          const message = model.get(name);
          if (message === null || message === undefined) return; // plotly.py resets each message to None
          if (!views.size) {
            pending.push([name, message]);
            return;
          }
          run(async () => {
            const P = await plotly(model);
            for (const gd of views) await APPLY[name](P, gd, message);
          });
        });
      }
      plotly(model).catch((error) => console.error("[workbench] the Plotly chart could not load:", error));
    },
    async render({ model, el }) {
      const P = await plotly(model);
      const gd = document.createElement("div");
      gd.className = "wb-chart";
      el.appendChild(gd);
      await run(async () => {
        const data = last ? last.data : fromPy(model.get("_widget_data")) ?? [];
        const layout = last ? last.layout : fromPy(model.get("_widget_layout")) ?? {};
        const config = { ...CONFIG, ...(fromPy(model.get("_config")) ?? {}) };
        await P.newPlot(gd, structuredClone(data), structuredClone(layout), config);
        for (const [name, message] of pending.splice(0)) await APPLY[name](P, gd, message);
        views.add(gd);
        last = gd;
      });
      // a chart drawn in a hidden tab has no width yet: draw again at its size once it is shown or resized
      let frame = 0;
      const resized = new ResizeObserver(() => {
        cancelAnimationFrame(frame);
        frame = requestAnimationFrame(() => {
          if (gd.offsetWidth > 0 && views.has(gd)) run(() => P.Plots.resize(gd));
        });
      });
      resized.observe(el);
      return () => {
        resized.disconnect();
        views.delete(gd);
        if (last === gd) last = views.size ? [...views].at(-1) : { data: gd.data, layout: gd.layout };
        P.purge(gd);
      };
    },
  };
};
