// The theme, applied before the first paint: this classic script runs in <head>, before the
// page's modules (which are deferred). The modules use the same functions through
// window.hostwatchTheme.
'use strict';

(function () {
  const THEME_KEY = 'hostwatch.theme';
  const darkQuery = window.matchMedia('(prefers-color-scheme: dark)');

  function storedTheme() {
    try {
      const t = window.localStorage.getItem(THEME_KEY);
      return t === 'dark' || t === 'light' ? t : null;
    } catch (_) {
      return null;
    }
  }

  document.documentElement.dataset.theme = storedTheme() || (darkQuery.matches ? 'dark' : 'light');
  window.hostwatchTheme = { key: THEME_KEY, darkQuery, storedTheme };
})();
