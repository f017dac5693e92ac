-- Singular test: the revenue mart adds up to the revenue orders of fct_orders (returns a row on mismatch).
with mart as (
    select coalesce(sum(revenue), 0) as revenue from {{ ref('daily_revenue') }}
),
facts as (
    select coalesce(sum(amount), 0) as revenue from {{ ref('fct_orders') }} where is_revenue
)
select mart.revenue as mart_revenue, facts.revenue as fact_revenue
from mart cross join facts
where mart.revenue <> facts.revenue
