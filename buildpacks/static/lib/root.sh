# Sourced by bin/compile and bin/release: sets STATIC_DIR, the folder served, relative to $1.
# The first line of `.static` may name it (e.g. `dist`); else public/ when there is no top
# index.html; else the app's root.
STATIC_DIR=""
if [ -f "$1/.static" ]; then
  STATIC_DIR=$(sed -n '/[^[:space:]]/{s/^[[:space:]]*//;s/[[:space:]]*$//;p;q;}' "$1/.static")
  case "$STATIC_DIR" in
    *..*|/*|*[!A-Za-z0-9._/-]*)
      echo " !     .static names '$STATIC_DIR': a folder of the app, like 'public' or 'dist'" >&2
      exit 1 ;;
  esac
fi
if [ -z "$STATIC_DIR" ] && [ -d "$1/public" ] && [ ! -f "$1/index.html" ]; then
  STATIC_DIR=public
fi
STATIC_DIR=${STATIC_DIR:-.}
