// MathJax 3 for pymdownx.arithmatex (generic mode): it typesets only the spans and blocks that
// arithmatex marks, \( ... \) inline and \[ ... \] displayed. MathJax itself is served from
// assets/mathjax/ (added by docs/hooks/site.py from the docs extra's Python package), never from a CDN.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};

// MathJax typesets the page it loads with; Material can then swap pages without a reload
// (navigation.instant), and each page it swaps in is typeset here. The first page is not typeset
// twice: a second pass would also typeset the hidden MathML that the first one left for screen readers.
let firstPage = true;
if (typeof document$ !== "undefined") {
  document$.subscribe(() => {
    if (firstPage) {
      firstPage = false;
      return;
    }
    if (window.MathJax && MathJax.typesetPromise) {
      MathJax.startup.output.clearCache();
      MathJax.typesetClear();
      MathJax.texReset();
      MathJax.typesetPromise();
    }
  });
}
