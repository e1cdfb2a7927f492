// stoke: search every sample and draw on zoom what was too narrow at first.
//
// The flame graph's stacks are embedded as JSON (#stoke-data): frame names
// with their colours, and each folded line as [count, name, name, ...] in
// the order inferno laid them out. From them this script lays out every
// frame (x and width in samples, depth), as inferno did before it left out
// the narrow ones, and replaces inferno's search, zoom and unzoom.
var stoke = null;
var stoke_term = null;
var stoke_zoomed = null;
var stoke_inferno_zoom = zoom;
var stoke_inferno_unzoom = unzoom;

function stoke_load() {
    if (stoke) return stoke;
    var data = JSON.parse(document.getElementById("stoke-data").textContent);
    var names = data.names, lines = data.stacks;
    // Frames as parallel arrays; frame 0 is the root ("all").
    var name = [-1], depth = [0], x = [0], width = [data.total];
    var lineX = new Array(lines.length);
    var open = [], prev = [], at = 0;
    for (var i = 0; i < lines.length; i++) {
        var line = lines[i];
        var n = line.length - 1;
        var shared = 0;
        while (shared < prev.length && shared < n && prev[shared] === line[shared + 1]) shared++;
        for (var j = open.length - 1; j >= shared; j--) width[open[j]] = at - x[open[j]];
        open.length = shared;
        for (var k = shared; k < n; k++) {
            open.push(name.length);
            name.push(line[k + 1]);
            depth.push(k + 1);
            x.push(at);
            width.push(0);
        }
        prev = line.slice(1);
        lineX[i] = at;
        at += line[0];
    }
    for (var m = open.length - 1; m >= 0; m--) width[open[m]] = at - x[open[m]];
    // Where inferno drew depth 0, from its "all" frame.
    var y0 = null;
    var children = frames.children;
    for (var c = 0; c < children.length; c++) {
        var title = find_child(children[c], "title");
        if (title && title.textContent.indexOf("all (") === 0) {
            y0 = parseFloat(find_child(children[c], "rect").attributes.y.value);
        }
    }
    var drawn = {};
    var deepest = 0;
    stoke = {
        data: data, names: names, lines: lines, lineX: lineX,
        name: name, depth: depth, x: x, width: width,
        y0: y0, drawn: drawn, deepest: 0, grown: 0,
    };
    for (var d = 0; d < children.length; d++) {
        var rect = find_child(children[d], "rect");
        var key = stoke_key(parseInt(rect.attributes["fg:x"].value), stoke_depth_of(rect));
        drawn[key] = children[d];
        deepest = Math.max(deepest, stoke_depth_of(rect));
    }
    stoke.deepest = deepest;
    stoke.capacity = deepest;
    return stoke;
}

function stoke_key(x, depth) {
    return x + ":" + depth;
}

function stoke_depth_of(rect) {
    var y = parseFloat(rect.attributes.y.value);
    var step = stoke.data.frameHeight;
    return Math.round(stoke.data.inverted ? (y - stoke.y0) / step : (stoke.y0 - y) / step);
}

function stoke_y(depth) {
    var step = stoke.data.frameHeight;
    return stoke.data.inverted ? stoke.y0 + depth * step : stoke.y0 - depth * step;
}

// A new frame element shaped like inferno's.
function stoke_element(f) {
    var ns = "http://www.w3.org/2000/svg", fg = "http://github.com/jonhoo/inferno";
    var entry = stoke.names[stoke.name[f]];
    var total = stoke.data.total;
    var g = document.createElementNS(ns, "g");
    g.setAttribute("class", "stoke-added");
    var title = document.createElementNS(ns, "title");
    var samples = stoke.width[f];
    title.textContent = entry[0] + " (" + samples.toLocaleString("en-US") + " samples, " +
        (100 * samples / total).toFixed(2) + "%)";
    var rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", format_percent(100 * stoke.x[f] / total));
    rect.setAttribute("y", stoke_y(stoke.depth[f]));
    rect.setAttribute("width", format_percent(100 * samples / total));
    rect.setAttribute("height", stoke.data.frameHeight - 1);
    rect.setAttribute("fill", entry[1]);
    rect.setAttributeNS(fg, "fg:x", stoke.x[f]);
    rect.setAttributeNS(fg, "fg:w", samples);
    var text = document.createElementNS(ns, "text");
    text.setAttribute("x", format_percent(100 * stoke.x[f] / total));
    text.setAttribute("y", stoke_y(stoke.depth[f]) + stoke.data.frameHeight / 2 + 2.5);
    g.appendChild(title);
    g.appendChild(rect);
    g.appendChild(text);
    return g;
}

// Makes room for frames down to `depth`, or gives back what was added.
function stoke_grow(depth) {
    var step = stoke.data.frameHeight;
    var extra = Math.max(0, depth - stoke.capacity) * step;
    var delta = extra - stoke.grown;
    if (delta === 0) return;
    var height = parseFloat(svg.attributes.height.value) + delta;
    svg.attributes.height.value = height;
    var box = svg.attributes.viewBox.value.split(" ");
    box[3] = height;
    svg.attributes.viewBox.value = box.join(" ");
    var background = svg.querySelector("rect");
    background.attributes.height.value = parseFloat(background.attributes.height.value) + delta;
    var below = [document.getElementById("details"), matchedtxt];
    for (var i = 0; i < below.length; i++) {
        var y = parseFloat(below[i].attributes.y.value);
        if (y > stoke.y0) below[i].attributes.y.value = y + delta;
    }
    if (!stoke.data.inverted) {
        frames.setAttribute("y", extra);
        frames.setAttribute("overflow", "visible");
    }
    stoke.grown = extra;
}

// Draws the frames a zoom into frame (x, w, depth) shows that are not drawn:
// its ancestors, itself, and what under it is wide enough now.
function stoke_draw(x, w, depth) {
    var s = stoke_load();
    var min = s.data.minWidth / (100 / w);
    var deepest = 0;
    for (var f = 1; f < s.name.length; f++) {
        var fx = s.x[f], fw = s.width[f], fd = s.depth[f];
        var show = fd < depth ? fx <= x && fx + fw >= x + w : fx >= x && fx < x + w && fw >= min;
        if (!show) continue;
        deepest = Math.max(deepest, fd);
        var key = stoke_key(fx, fd);
        if (s.drawn[key]) continue;
        var g = stoke_element(f);
        s.drawn[key] = g;
        frames.appendChild(g);
    }
    stoke_grow(deepest);
}

function stoke_remove_added() {
    if (!stoke) return;
    var added = frames.querySelectorAll(".stoke-added");
    for (var i = 0; i < added.length; i++) {
        var rect = find_child(added[i], "rect");
        delete stoke.drawn[stoke_key(parseInt(rect.attributes["fg:x"].value), stoke_depth_of(rect))];
        frames.removeChild(added[i]);
    }
    stoke_grow(0);
}

find_group = function (node) {
    if (!node) return;
    var parent = node.parentElement;
    if (!parent) return;
    if (parent.id == "frames") return node;
    return find_group(parent);
};

zoom = function (node) {
    if (!node) return;
    var rect = find_child(node, "rect");
    if (!rect) return;
    stoke_load();
    var x = parseInt(rect.attributes["fg:x"].value);
    var w = parseInt(rect.attributes["fg:w"].value);
    var depth = stoke_depth_of(rect);
    stoke_draw(x, w, depth);
    stoke_inferno_zoom(node);
    stoke_zoomed = { x: x, w: w, depth: depth };
    if (searching && stoke_term !== null) search(stoke_term);
};

unzoom = function () {
    stoke_remove_added();
    stoke_zoomed = null;
    stoke_inferno_unzoom();
    if (searching && stoke_term !== null) search(stoke_term);
};

// Highlights the matching frames drawn and shows the share of all samples
// whose stack has a matching frame (drawn or not), and, zoomed, the share
// of the zoomed frame's samples.
search = function (term) {
    var s = stoke_load();
    var re = new RegExp(term);
    reset_search();
    var match = new Array(s.names.length);
    for (var n = 0; n < s.names.length; n++) match[n] = re.test(s.names[n][0]);
    var all = 0, here = 0, any = false;
    var z = stoke_zoomed;
    for (var i = 0; i < s.lines.length; i++) {
        var line = s.lines[i];
        var hit = false, hitHere = false;
        var inside = z && s.lineX[i] >= z.x && s.lineX[i] < z.x + z.w;
        for (var k = 1; k < line.length; k++) {
            if (match[line[k]]) {
                hit = true;
                if (inside && k >= z.depth) hitHere = true;
            }
        }
        if (hit) all += line[0];
        if (hitHere) here += line[0];
        any = any || hit;
    }
    var el = frames.children;
    for (var e = 0; e < el.length; e++) {
        var g = el[e];
        if (g.classList.contains("hide") || g.classList.contains("parent")) continue;
        var rect = find_child(g, "rect");
        var f = stoke_frame_of(rect);
        if (f > 0 && match[s.name[f]]) {
            orig_save(rect, "fill");
            rect.attributes.fill.value = searchcolor;
        }
    }
    stoke_term = term;
    if (!any) {
        matchedtxt.classList.remove("hide");
        matchedtxt.firstChild.nodeValue = "Matched: 0% of all samples";
        return;
    }
    searching = 1;
    var params = get_params();
    params.s = term;
    history.replaceState(null, null, parse_params(params));
    searchbtn.classList.add("show");
    searchbtn.firstChild.nodeValue = "Reset Search";
    var text = "Matched: " + stoke_percent(all, s.data.total) + " of all samples";
    if (z) text += ", " + stoke_percent(here, z.w) + " of the zoomed frame";
    matchedtxt.classList.remove("hide");
    matchedtxt.firstChild.nodeValue = text;
};

// The layout frame a drawn rect stands for (0 when unknown).
function stoke_frame_of(rect) {
    var s = stoke;
    if (!s.index) {
        s.index = {};
        for (var f = 1; f < s.name.length; f++) s.index[stoke_key(s.x[f], s.depth[f])] = f;
    }
    var f = s.index[stoke_key(parseInt(rect.attributes["fg:x"].value), stoke_depth_of(rect))];
    return f === undefined ? 0 : f;
}

function stoke_percent(part, whole) {
    if (whole <= 0) return "0%";
    var pct = 100 * part / whole;
    return (pct === 100 ? "100" : pct.toFixed(1)) + "%";
}
