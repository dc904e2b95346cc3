# Environment of this recipe, sourced from the recipe folder by sv.sh and local/*.sh: the
# project's Python (utils/install.sh makes its virtualenv), the repository on PYTHONPATH, C
# sort order.
. utils/lib/sslsv_env.sh
