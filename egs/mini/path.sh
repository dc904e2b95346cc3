# Environment of this recipe, sourced by run.sh from the recipe folder: the project's Python
# (utils/install.sh makes its virtualenv), the repository on PYTHONPATH, C sort order.
. utils/lib/sslsv_env.sh
