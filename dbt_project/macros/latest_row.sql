{#- Latest version of each row of an incrementally extracted raw table (newest updated_at wins;
    ties go to the newest extract interval). -#}
{% macro latest_row(relation, key='id', modified='updated_at') -%}
select * from (
    select
        r.*,
        row_number() over (
            partition by r.{{ adapter.quote(key) }}
            order by r.{{ adapter.quote(modified) }} desc nulls last, r._interval_start desc
        ) as _version_rank
    from {{ relation }} as r
) as versions
where _version_rank = 1
{%- endmacro %}
